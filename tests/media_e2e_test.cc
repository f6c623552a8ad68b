// Media plugins through the real host, checked against the reference tools:
// `probe` against ffprobe, `checksum` against sha256sum and xxhsum. Test
// media is generated here with ffmpeg's lavfi sources, never downloaded.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <random>

#include "support/host_process.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

using nlohmann::json;

class MediaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    Generate("av.mp4", {"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-f", "lavfi", "-i",
                        "sine=frequency=440:sample_rate=48000:duration=2", "-c:v", "mpeg4", "-c:a", "aac",
                        "-ac", "2", "-metadata:s:a:0", "language=eng"});
    Generate("tone.wav", {"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100:duration=1"});
    Generate("still.png", {"-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1"});
    dir_->Write("notes.txt", "this is not media\n");
  }
  static void TearDownTestSuite() { delete dir_; }

  static void Generate(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-y"});
    args.push_back((dir_->path() / name).string());
    ASSERT_EQ(RunCommand(args).exit_code, 0) << "ffmpeg could not make " << name;
  }

  static std::string Path(const std::string& name) { return (dir_->path() / name).string(); }

  Result Run(const std::string& plugin, const std::string& path) {
    host_.Send(PackTask({.id = plugin + ":" + path, .plugin = plugin, .string_input = {{"path", path}}}));
    return host_.NextResult();
  }

  static TempDir* dir_;
  HostProcess host_;
};
TempDir* MediaTest::dir_ = nullptr;

json OutputJson(const Result& r) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, *r.output);
  return json::from_msgpack(std::string(buffer.data(), buffer.size()));
}

TEST_F(MediaTest, ProbeAgreesWithFfprobe) {
  for (const char* name : {"av.mp4", "tone.wav", "still.png"}) {
    SCOPED_TRACE(name);
    const Result r = Run("probe", Path(name));
    ASSERT_EQ(r.status, "ok") << r.error_message;
    const json ours = OutputJson(r);
    const CommandOutput ffprobe = RunCommand({"/usr/bin/ffprobe", "-v", "error", "-print_format", "json",
                                              "-show_format", "-show_streams", Path(name)});
    ASSERT_EQ(ffprobe.exit_code, 0);
    const json theirs = json::parse(ffprobe.out);

    EXPECT_EQ(ours["format_name"], theirs["format"]["format_name"]);
    if (theirs["format"].contains("duration")) {
      EXPECT_NEAR(ours["duration"].get<double>(), std::stod(theirs["format"]["duration"].get<std::string>()), 1e-6);
    }
    if (theirs["format"].contains("bit_rate")) {
      EXPECT_EQ(ours["bit_rate"].get<int64_t>(), std::stoll(theirs["format"]["bit_rate"].get<std::string>()));
    }
    ASSERT_EQ(ours["streams"].size(), theirs["streams"].size());
    for (size_t i = 0; i < ours["streams"].size(); ++i) {
      const json& a = ours["streams"][i];
      const json& b = theirs["streams"][i];
      SCOPED_TRACE("stream " + std::to_string(i));
      EXPECT_EQ(a["codec_type"], b["codec_type"]);
      EXPECT_EQ(a["codec_name"], b["codec_name"]);
      if (b.contains("profile")) {
        EXPECT_EQ(a["profile"], b["profile"]);
      }
      if (b["codec_type"] == "video") {
        EXPECT_EQ(a["width"], b["width"]);
        EXPECT_EQ(a["height"], b["height"]);
        EXPECT_EQ(a["pix_fmt"], b["pix_fmt"]);
        EXPECT_EQ(a["avg_frame_rate"], b["avg_frame_rate"]);
      }
      if (b["codec_type"] == "audio") {
        EXPECT_EQ(a["sample_rate"].get<int>(), std::stoi(b["sample_rate"].get<std::string>()));
        EXPECT_EQ(a["channels"], b["channels"]);
      }
      if (b.contains("tags") && b["tags"].contains("language")) {
        EXPECT_EQ(a["language"], b["tags"]["language"]);
      }
    }
  }
}

TEST_F(MediaTest, ProbeSaysWhatIsWrongWithBadFiles) {
  const Result missing = Run("probe", Path("absent.mp4"));
  EXPECT_EQ(missing.status, "error");
  EXPECT_EQ(missing.error_code, "not_found");
  const Result text = Run("probe", Path("notes.txt"));
  EXPECT_EQ(text.status, "error");
  EXPECT_EQ(text.error_code, "unsupported");
  EXPECT_NE(text.error_message.find("notes.txt"), std::string::npos);
  EXPECT_EQ(Run("noop", "").status, "ok") << "the host keeps serving";
}

TEST_F(MediaTest, ChecksumAgreesWithSha256sumAndXxhsum) {
  std::mt19937 random(3);
  std::string bytes(3 * 1000 * 1000 + 17, '\0');
  for (char& c : bytes) c = static_cast<char>(random());
  dir_->Write("random.bin", bytes);
  dir_->Write("empty.bin", "");
  for (const char* name : {"random.bin", "empty.bin", "av.mp4"}) {
    SCOPED_TRACE(name);
    const Result r = Run("checksum", Path(name));
    ASSERT_EQ(r.status, "ok") << r.error_message;
    const json ours = OutputJson(r);
    const std::string sha = RunCommand({"/usr/bin/sha256sum", Path(name)}).out.substr(0, 64);
    EXPECT_EQ(ours["sha256"], sha);
    const std::string xxh = RunCommand({"/usr/bin/xxhsum", "-H3", Path(name)}).out;
    EXPECT_NE(xxh.find("= " + ours["xxh3"].get<std::string>()), std::string::npos) << xxh;
    EXPECT_EQ(ours["bytes"].get<uint64_t>(), std::filesystem::file_size(Path(name)));
  }
  const Result missing = Run("checksum", Path("absent.bin"));
  EXPECT_EQ(missing.error_code, "not_found");
}

}  // namespace
}  // namespace umi::testing
