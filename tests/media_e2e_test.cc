// Media plugins through the real host, checked against the reference tools:
// `probe` against ffprobe, `checksum` against sha256sum and xxhsum. Test
// media is generated here with ffmpeg's lavfi sources, never downloaded.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <fstream>
#include <random>

#include "support/host_process.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

using nlohmann::json;

// Config lines for the media plugins: reading `in`, writing `out`; `mode`
// goes before their settings.
std::string MediaPlugins(const std::string& in, const std::string& out, const std::string& mode = "") {
  std::string plugins;
  for (const char* plugin : {"probe", "checksum", "thumbnail", "scenes"}) {
    plugins += std::string("  ") + plugin + ": {" + mode + "settings: {media_roots: [" + in + "], output_root: " + out + "}}\n";
  }
  return plugins + "  scenes_cuda: {settings: {media_roots: [" + in + "]}}\n";
}

// Every test runs twice: the media plugins on the host's threads, and in
// sandboxed worker processes confined to the test's media directory
// (isolation: process, media_roots and output_root): the same outputs.
class MediaTest : public ::testing::TestWithParam<bool> {
 protected:
  static HostProcess::Options HostOptions(bool sandboxed) {
    return {.config_yaml = TestConfigYaml(MediaPlugins(dir_->path().string(), dir_->path().string(),
                                                       sandboxed ? "isolation: process, processes: 0, " : ""))};
  }

  static void SetUpTestSuite() {
    dir_ = new TempDir();
    Generate("av.mp4", {"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-f", "lavfi", "-i",
                        "sine=frequency=440:sample_rate=48000:duration=2", "-c:v", "mpeg4", "-c:a", "aac",
                        "-ac", "2", "-metadata:s:a:0", "language=eng"});
    Generate("tone.wav", {"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100:duration=1"});
    Generate("still.png", {"-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1"});
    // Known cuts at 1.0 s (black -> white) and 2.0 s (white -> moving pattern).
    Generate("cuts.mp4", {"-f", "lavfi", "-i", "color=c=black:s=320x240:r=25:d=1", "-f", "lavfi", "-i",
                          "color=c=white:s=320x240:r=25:d=1", "-f", "lavfi", "-i",
                          "testsrc2=size=320x240:rate=25:duration=1", "-filter_complex",
                          "[0][1][2]concat=n=3:v=1:a=0", "-c:v", "mpeg4", "-q:v", "3"});
    dir_->Write("notes.txt", "this is not media\n");
    // Two PNG frames whose pixel format changes mid-stream (pal8, then gray).
    Generate("f1.png", {"-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", "-pix_fmt", "pal8"});
    Generate("f2.png", {"-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", "-pix_fmt", "gray"});
    Generate("palgray.mkv", {"-framerate", "5", "-i", Path("f%d.png"), "-c", "copy"});
    // A sliver: 16 wide, 2048 tall.
    Generate("tall.png", {"-f", "lavfi", "-i", "color=c=red:s=16x2048", "-frames:v", "1"});
    // Damaged copies: the index intact but the data cut short, and garbage after the header.
    Generate("indexed.mp4", {"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-c:v", "mpeg4",
                             "-movflags", "+faststart"});
    std::ifstream whole(Path("indexed.mp4"), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(whole)), std::istreambuf_iterator<char>());
    dir_->Write("truncated.mp4", bytes.substr(0, bytes.size() / 10));
    std::string garbled = bytes.substr(0, 3000);
    std::mt19937 random(5);
    for (int i = 0; i < 20000; ++i) garbled += static_cast<char>(random());
    dir_->Write("garbled.mp4", garbled);
  }
  static void TearDownTestSuite() { delete dir_; }

  static void Generate(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-y"});
    args.push_back((dir_->path() / name).string());
    ASSERT_EQ(RunCommand(args).exit_code, 0) << "ffmpeg could not make " << name;
  }

  static std::string Path(const std::string& name) { return (dir_->path() / name).string(); }

  Result Run(const std::string& plugin, const std::string& path,
             std::map<std::string, std::string> strings = {}, std::map<std::string, int64_t> numbers = {}) {
    strings["path"] = path;
    host_.Send(PackTask({.id = plugin + ":" + path + ":" + std::to_string(++runs_), .plugin = plugin,
                         .input = numbers, .string_input = strings}));
    return host_.NextResult();
  }

  int runs_ = 0;

  static TempDir* dir_;
  HostProcess host_{HostOptions(GetParam())};
};
TempDir* MediaTest::dir_ = nullptr;
INSTANTIATE_TEST_SUITE_P(, MediaTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& mode) { return mode.param ? "Sandboxed" : "Threads"; });

json OutputJson(const Result& r) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, *r.output);
  return json::from_msgpack(std::string(buffer.data(), buffer.size()));
}

TEST_P(MediaTest, ProbeAgreesWithFfprobe) {
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

TEST_P(MediaTest, ProbeSaysWhatIsWrongWithBadFiles) {
  const Result missing = Run("probe", Path("absent.mp4"));
  EXPECT_EQ(missing.status, "error");
  EXPECT_EQ(missing.error_code, "not_found");
  const Result text = Run("probe", Path("notes.txt"));
  EXPECT_EQ(text.status, "error");
  EXPECT_EQ(text.error_code, "unsupported");
  EXPECT_NE(text.error_message.find("notes.txt"), std::string::npos);
  EXPECT_EQ(Run("noop", "").status, "ok") << "the host keeps serving";
}

TEST_P(MediaTest, ChecksumAgreesWithSha256sumAndXxhsum) {
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

std::vector<double> CutTimes(const json& output) {
  std::vector<double> times;
  for (const json& cut : output["cuts"]) times.push_back(cut["time"].get<double>());
  return times;
}

TEST_P(MediaTest, ScenesFindsTheKnownCuts) {
  const Result r = Run("scenes", Path("cuts.mp4"));
  ASSERT_EQ(r.status, "ok") << r.error_message;
  const json output = OutputJson(r);
  const std::vector<double> cuts = CutTimes(output);
  ASSERT_EQ(cuts.size(), 2u) << output.dump();
  EXPECT_NEAR(cuts[0], 1.0, 0.041);  // within one frame at 25 fps
  EXPECT_NEAR(cuts[1], 2.0, 0.041);
  EXPECT_EQ(output["frames"], 75);
  EXPECT_EQ(Run("scenes", Path("notes.txt")).error_code, "unsupported");
  EXPECT_EQ(Run("scenes", Path("tone.wav")).error_code, "unsupported") << "no video stream";
}

TEST_P(MediaTest, DamagedFilesAreCorruptNotACrash) {
  for (const char* name : {"truncated.mp4", "garbled.mp4"}) {
    SCOPED_TRACE(name);
    const Result scenes = Run("scenes", Path(name));
    EXPECT_EQ(scenes.status, "error");
    EXPECT_EQ(scenes.error_code, "corrupt") << scenes.error_message;
  }
  const Result late = Run("thumbnail", Path("truncated.mp4"), {}, {{"at", 1}});
  EXPECT_EQ(late.error_code, "corrupt") << late.error_message;
  const Result past = Run("thumbnail", Path("av.mp4"), {}, {{"at", 30}});
  EXPECT_EQ(past.error_code, "bad_input") << past.error_message;
  EXPECT_EQ(Run("noop", "").status, "ok") << "the host keeps serving";
}

TEST_P(MediaTest, ScenesCudaGivesTheSameCutsOrFailsCleanlyWithoutADevice) {
  const Result gpu = Run("scenes_cuda", Path("cuts.mp4"));
  if (gpu.error_code == "unknown_plugin") GTEST_SKIP() << "built without CUDA: " << gpu.error_message;
  if (gpu.status != "ok") {
    EXPECT_EQ(gpu.status, "error");
    EXPECT_EQ(gpu.error_code, "no_device") << gpu.error_message;
    EXPECT_EQ(Run("noop", "").status, "ok") << "the host keeps serving";
    GTEST_SKIP() << "no usable GPU here (" << gpu.error_message << "); scripts/gpu-check runs the parity check";
  }
  const Result cpu = Run("scenes", Path("cuts.mp4"));
  ASSERT_EQ(cpu.status, "ok");
  EXPECT_EQ(CutTimes(OutputJson(gpu)), CutTimes(OutputJson(cpu)));
  EXPECT_EQ(OutputJson(gpu)["frames"], OutputJson(cpu)["frames"]);
}

TEST_P(MediaTest, ThumbnailMatchesTheFrameFfmpegExtracts) {
  const std::string ours = (dir_->path() / "ours.png").string();
  const Result r = Run("thumbnail", Path("av.mp4"), {{"format", "png"}, {"output", ours}}, {{"width", 160}});
  ASSERT_EQ(r.status, "ok") << r.error_message;
  const json output = OutputJson(r);
  EXPECT_EQ(output["width"], 160);
  EXPECT_EQ(output["height"], 120);
  EXPECT_EQ(output["output"], ours);
  EXPECT_NEAR(output["timestamp"].get<double>(), 0.0, 1e-9);

  // The same frame from the ffmpeg CLI, same scaler; compare with its psnr filter.
  const std::string reference = (dir_->path() / "reference.png").string();
  ASSERT_EQ(RunCommand({"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-y", "-i", Path("av.mp4"), "-frames:v", "1",
                        "-vf", "scale=160:120:flags=bicubic", reference})
                .exit_code,
            0);
  const CommandOutput psnr = RunCommand({"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-i", ours, "-i", reference,
                                         "-lavfi", "psnr=stats_file=-", "-f", "null", "-"});
  const auto at = psnr.out.find("psnr_avg:");
  ASSERT_NE(at, std::string::npos) << psnr.out;
  const std::string value = psnr.out.substr(at + 9, psnr.out.find(' ', at) - at - 9);
  if (value != "inf") {  // inf: identical pixels
    EXPECT_GT(std::stod(value), 35.0) << "PSNR against ffmpeg's frame: " << value;
  }
}

TEST_P(MediaTest, ThumbnailSeeksAndWritesJpeg) {
  const std::string out = (dir_->path() / "later.jpg").string();
  const Result r = Run("thumbnail", Path("cuts.mp4"), {{"output", out}}, {{"width", 64}, {"at", 1}});
  ASSERT_EQ(r.status, "ok") << r.error_message;
  const json output = OutputJson(r);
  EXPECT_NEAR(output["timestamp"].get<double>(), 1.0, 1e-9);
  const json probed = json::parse(RunCommand({"/usr/bin/ffprobe", "-v", "error", "-print_format", "json",
                                              "-show_streams", out}).out);
  EXPECT_EQ(probed["streams"][0]["codec_name"], "mjpeg");
  EXPECT_EQ(probed["streams"][0]["width"], 64);
  EXPECT_EQ(probed["streams"][0]["height"], 48);
  EXPECT_EQ(Run("thumbnail", Path("absent.mp4")).error_code, "not_found");
  EXPECT_EQ(Run("thumbnail", Path("av.mp4"), {{"format", "gif"}}).error_code, "bad_input");
}

TEST_P(MediaTest, MediaRootsAndOutputRootConfineFileAccess) {
  TempDir inside, out;
  std::filesystem::copy_file(Path("still.png"), inside.path() / "still.png");
  std::filesystem::create_symlink(Path("still.png"), inside.path() / "escape.png");
  std::filesystem::create_symlink(Path("planted.jpg"), out.path() / "link.jpg");
  const std::string in_dir = inside.path().string(), out_dir = out.path().string();
  HostProcess confined({.config_yaml = TestConfigYaml("  probe: {settings: {media_roots: [" + in_dir + "]}}\n"
                                                      "  thumbnail: {settings: {media_roots: [" + in_dir +
                                                      "], output_root: " + out_dir + "}}\n")});
  auto run = [&](const std::string& plugin, const std::string& path, const std::string& output = "") {
    TaskSpec task{.id = plugin + path + output, .plugin = plugin, .string_input = {{"path", path}}};
    if (!output.empty()) task.string_input["output"] = output;
    confined.Send(PackTask(task));
    return confined.NextResult();
  };
  EXPECT_EQ(run("probe", in_dir + "/still.png").status, "ok");
  for (const std::string& escape : {Path("still.png"), in_dir + "/../" + dir_->path().filename().string() + "/still.png",
                                    in_dir + "/escape.png"}) {
    const Result r = run("probe", escape);
    EXPECT_EQ(r.error_code, "forbidden") << escape << ": " << r.error_message;
  }
  EXPECT_EQ(run("thumbnail", in_dir + "/still.png", out_dir + "/t.jpg").status, "ok");
  EXPECT_TRUE(std::filesystem::exists(out.path() / "t.jpg"));
  for (const std::string& escape : {Path("x.jpg"), out_dir + "/../x.jpg", out_dir + "/link.jpg"}) {
    const Result r = run("thumbnail", in_dir + "/still.png", escape);
    EXPECT_EQ(r.error_code, "forbidden") << escape << ": " << r.error_message;
  }
  EXPECT_FALSE(std::filesystem::exists(Path("planted.jpg")));
  EXPECT_FALSE(std::filesystem::exists(Path("x.jpg")));
  // A plugin with no media_roots reads nothing, and says what to set. Before: anything the host may read.
  const Result unset = run("checksum", Path("still.png"));
  EXPECT_EQ(unset.error_code, "forbidden");
  EXPECT_NE(unset.error_message.find("add plugins.checksum.settings.media_roots: [dir, ...] to the host's config"),
            std::string::npos) << unset.error_message;
}

TEST_P(MediaTest, AFormatChangeMidStreamIsScaledNotACrash) {
  const Result r = Run("scenes", Path("palgray.mkv"));
  ASSERT_EQ(r.status, "ok") << r.error_code << ": " << r.error_message;
  EXPECT_EQ(OutputJson(r)["frames"], 2);
  EXPECT_EQ(Run("thumbnail", Path("palgray.mkv"), {{"output", Path("palgray.jpg")}}).status, "ok");
  EXPECT_EQ(Run("noop", "").status, "ok") << "the host keeps serving";
}

TEST_P(MediaTest, OnlyRegularFilesAreOpened) {
  const std::string fifo = Path("pipe.mp4");
  unlink(fifo.c_str());  // the other mode's run made it
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  for (const char* plugin : {"probe", "thumbnail", "scenes", "checksum"}) {
    SCOPED_TRACE(plugin);
    const Result r = Run(plugin, fifo);  // before: blocked in open() for ever
    EXPECT_EQ(r.error_code, "unsupported") << r.error_message;
    EXPECT_NE(r.error_message.find("a FIFO"), std::string::npos) << r.error_message;
    const Result directory = Run(plugin, dir_->path().string());
    EXPECT_EQ(directory.error_code, "unsupported") << directory.error_message;
  }
  EXPECT_EQ(Run("checksum", Path("absent.bin")).error_code, "not_found");
}

TEST_P(MediaTest, BuffersAreBoundedByTheTaskMemory) {
  // 4096 wide analysis frames of a 16x2048 image would be 524288 rows (2 GiB each).
  const Result scenes = Run("scenes", Path("tall.png"), {}, {{"width", 4096}});
  EXPECT_EQ(scenes.error_code, "bad_input") << scenes.error_message;
  const Result thumb = Run("thumbnail", Path("tall.png"), {{"output", Path("tall.jpg")}}, {{"width", 8192}});
  EXPECT_EQ(thumb.error_code, "bad_input") << thumb.error_message;
  // Within the grant the same image works.
  EXPECT_EQ(Run("scenes", Path("tall.png"), {}, {{"width", 16}}).status, "ok");
  // A 2000x2000 thumbnail (24 MB) does not fit a 16 MB grant.
  TaskSpec small{.id = "small-grant", .plugin = "thumbnail", .input = {{"width", 2000}},
                 .string_input = {{"path", Path("still.png")}, {"output", Path("big.jpg")}},
                 .resources = {{"memory_mb", 16}}};
  HostProcess overrides(
      {.config_yaml = TestConfigYaml(MediaPlugins(dir_->path().string(), dir_->path().string())) + "allow_task_overrides: true\n"});
  overrides.Send(PackTask(small));
  const Result grant = overrides.NextResult();
  EXPECT_EQ(grant.error_code, "bad_input") << grant.error_message;
  EXPECT_NE(grant.error_message.find("memory_mb=16"), std::string::npos) << grant.error_message;
}

TEST_P(MediaTest, FilesThatNameOtherFilesCannotLeaveTheMediaRoots) {
  TempDir inside, out;
  Generate("outside.ts", {"-f", "lavfi", "-i", "testsrc=size=64x48:duration=1", "-c:v", "mpeg2video"});
  // An HLS playlist named like a video, and an ffconcat list reaching out through a symlinked directory.
  inside.Write("x.mp4", "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.0,\n" + Path("outside.ts") +
                            "\n#EXT-X-ENDLIST\n");
  std::filesystem::create_directory_symlink(dir_->path(), inside.path() / "link");
  inside.Write("list.txt", "ffconcat version 1.0\nfile 'link/outside.ts'\n");
  const std::string in_dir = inside.path().string(), out_dir = out.path().string();
  HostProcess confined({.config_yaml = TestConfigYaml("  probe: {settings: {media_roots: [" + in_dir + "]}}\n"
                                                      "  thumbnail: {settings: {media_roots: [" + in_dir +
                                                      "], output_root: " + out_dir + "}}\n")});
  int n = 0;
  for (const char* name : {"x.mp4", "list.txt"}) {
    for (const char* plugin : {"probe", "thumbnail"}) {
      SCOPED_TRACE(std::string(plugin) + " " + name);
      TaskSpec task{.id = std::to_string(++n), .plugin = plugin,
                    .string_input = {{"path", in_dir + "/" + name}, {"output", out_dir + "/t" + std::to_string(n) + ".jpg"}}};
      confined.Send(PackTask(task));
      const Result r = confined.NextResult();
      EXPECT_EQ(r.status, "error");
      EXPECT_EQ(r.error_code, "unsupported") << r.error_message;
    }
  }
  EXPECT_TRUE(std::filesystem::is_empty(out.path())) << "no thumbnail of an outside file";
}

// One flow per file: probe and checksum, thumbnail and scenes after probe,
// and the example's own Python plugin writing each file's entry from its
// upstream steps.
TEST(IngestExample, WritesAReportAndAContactSheet) {
  TempDir dir;
  const auto media = dir.path() / "media";
  ASSERT_EQ(RunCommand({"/bin/bash", UMI_SOURCE_DIR "/examples/ingest/make_samples.sh", media.string()}).exit_code, 0);
  const auto out = dir.path() / "report";
  std::filesystem::create_directories(out);  // the workers' sandbox grants what exists when they start
  setenv("UMI_PYTHON", "/usr/bin/python3", 0);  // Debian's, with python3-msgpack
  HostProcess host({.config_yaml = TestConfigYaml(MediaPlugins(media.string(), out.string(),
                                                               "isolation: process, processes: 0, ") +
                                                  "  ingest_entry: {settings: {output_root: " + out.string() + "}}\n"),
                    .plugin_dirs = {UMI_TEST_PLUGIN_DIR, UMI_SOURCE_DIR "/examples/ingest/plugins"}});
  const CommandOutput run = RunCommand({"/usr/bin/python3", UMI_SOURCE_DIR "/examples/ingest/ingest.py", media.string(),
                                        "--rpc", host.endpoint("rpc"), "--out", out.string()});
  ASSERT_EQ(run.exit_code, 0) << run.out;
  EXPECT_EQ(run.out, (out / "index.html").string() + "\n");
  std::ifstream report_file(out / "report.json");
  const json report = json::parse(report_file);
  ASSERT_EQ(report["files"].size(), 4u);
  EXPECT_EQ(report["failed_steps"], 0);
  EXPECT_EQ(report["files"]["cuts.mp4"]["scenes"]["cuts"].size(), 2u);
  EXPECT_EQ(report["files"]["tone.wav"]["probe"]["streams"][0]["codec_type"], "audio");
  EXPECT_FALSE(report["files"]["tone.wav"].contains("thumbnail")) << "no video, no thumbnail";
  EXPECT_EQ(report["files"]["pattern.mp4"]["checksum"]["sha256"].get<std::string>().size(), 64u);
  for (const char* thumb : {"pattern.jpg", "cuts.jpg", "still.jpg"}) {
    EXPECT_TRUE(std::filesystem::exists(out / "thumbnails" / thumb)) << thumb;
  }
  std::ifstream sheet_file(out / "index.html");
  const std::string sheet((std::istreambuf_iterator<char>(sheet_file)), std::istreambuf_iterator<char>());
  EXPECT_NE(sheet.find("<img src=\"thumbnails/cuts.jpg\""), std::string::npos);
  EXPECT_NE(sheet.find("<td>cuts.mp4</td><td>4.00 s</td><td>mpeg4</td><td>2</td>"), std::string::npos) << sheet;
  // The entry step read its upstream: the same checksum, the probe's streams.
  std::ifstream entry_file(out / "entries" / "pattern.mp4.json");
  const json entry = json::parse(entry_file);
  EXPECT_EQ(entry["checksum"], report["files"]["pattern.mp4"]["checksum"]);
  EXPECT_EQ(entry["streams"].size(), 2u);
}

}  // namespace
}  // namespace umi::testing
