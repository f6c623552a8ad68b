// The loop with a fake transport: no sockets, a manual clock, plugins
// registered in-process. What a transport delivers is accepted, run and
// answered once on its route; bad input is answered, not dropped; a drain
// ends Run. Only the transport seam (transport.h) is between the two.
#include "host/host.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <msgpack.hpp>

#include "transport/poller.h"

namespace umi {
namespace {

// Hands the loop what a test pushes (through an eventfd the loop's Poller
// watches) and keeps every answer.
class FakeTransport final : public Transport {
 public:
  FakeTransport() : wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~FakeTransport() override { close(wake_); }

  Status Open(Poller& poller, Inbox& inbox) override {
    poller.Add(wake_, [] { return static_cast<short>(ZMQ_POLLIN); }, [this, &inbox](short) {
      uint64_t count = 0;
      (void)read(wake_, &count, sizeof(count));
      std::deque<std::pair<std::string, bool>> messages;
      {
        std::lock_guard lock(mutex_);
        messages.swap(inbound_);
      }
      for (auto& [bytes, rpc] : messages) inbox.Deliver(bytes, ReplyRoute{this, rpc, {}});
    });
    return {};
  }
  std::map<std::string, std::string> endpoints() const override { return {{"fake", "fake://"}}; }
  size_t waiting() const override { return 0; }
  size_t Flush(std::chrono::steady_clock::time_point) override { return 0; }
  void Send(std::string_view body, const ReplyRoute&, const TaskFingerprint*) override {
    std::lock_guard lock(mutex_);
    answers_.emplace_back(body);
    answered_.notify_all();
  }

  // From the test's thread.
  void Push(std::string bytes, bool rpc = false) {
    {
      std::lock_guard lock(mutex_);
      inbound_.emplace_back(std::move(bytes), rpc);
    }
    const uint64_t one = 1;
    ASSERT_EQ(write(wake_, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
  }
  // The `index`th answer, once it came (an event, not a sleep).
  std::map<std::string, msgpack::object> Answer(size_t index, msgpack::object_handle& handle) {
    std::unique_lock lock(mutex_);
    EXPECT_TRUE(answered_.wait_for(lock, std::chrono::seconds(60), [&] { return answers_.size() > index; }))
        << "no answer " << index << " within a minute";
    if (answers_.size() <= index) return {};
    handle = msgpack::unpack(answers_[index].data(), answers_[index].size());
    return handle.get().as<std::map<std::string, msgpack::object>>();
  }
  size_t answer_count() {
    std::lock_guard lock(mutex_);
    return answers_.size();
  }

 private:
  const int wake_;
  std::mutex mutex_;
  std::condition_variable answered_;
  std::deque<std::pair<std::string, bool>> inbound_;
  std::vector<std::string> answers_;
};

std::string Pack(const std::map<std::string, std::string>& fields) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_map(static_cast<uint32_t>(fields.size() + 1));
  packer.pack("v");
  packer.pack(1);
  for (const auto& [key, value] : fields) {
    packer.pack(key);
    packer.pack(value);
  }
  return std::string(buffer.data(), buffer.size());
}

UMI_Error* Noop(UMI_Context*) { return nullptr; }

class HostLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.hardware.cpu.cores = 2;
    config_.hardware.cpu.threads = 2;
    auto plugin = std::make_unique<LoadedPlugin>();
    plugin->name = "noop";
    plugin->declared.cpu_cores = Quantity::Whole(1);
    plugin->declared.cpu_threads = 1;
    plugin->execute = &Noop;
    ASSERT_TRUE(plugins_.Register(std::move(plugin)).ok());
    auto transport = std::make_unique<FakeTransport>();
    transport_ = transport.get();
    HostTransports transports;
    transports.transports.push_back(std::move(transport));
    HostOptions options;
    options.name = "loop-test";
    options.clock = &clock_;
    host_ = std::make_unique<Host>(options, plugins_, std::move(transports));
    ASSERT_TRUE(host_->Open().ok());
    stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);  // a signalfd that never fires
    loop_ = std::thread([this] { exit_code_ = host_->Run(stop_fd_); });
  }

  void TearDown() override {
    if (loop_.joinable()) {
      transport_->Push(Pack({{"op", "drain"}}), /*rpc=*/true);
      loop_.join();
    }
    close(stop_fd_);
  }

  ManualClock clock_;
  HardwareConfig config_;
  PluginRegistry plugins_{config_};
  FakeTransport* transport_ = nullptr;
  std::unique_ptr<Host> host_;
  int stop_fd_ = -1;
  int exit_code_ = -1;
  std::thread loop_;
};

TEST_F(HostLoopTest, ADeliveredTaskIsRunAndAnsweredOnceOnItsRoute) {
  transport_->Push(Pack({{"id", "t1"}, {"plugin", "noop"}}));
  msgpack::object_handle handle;
  auto result = transport_->Answer(0, handle);
  ASSERT_FALSE(result.empty());
  EXPECT_EQ(result.at("id").as<std::string>(), "t1");
  EXPECT_EQ(result.at("status").as<std::string>(), "ok");
  EXPECT_EQ(result.at("host").as<std::string>(), "loop-test");
}

TEST_F(HostLoopTest, BadInputIsAnsweredAndTheLoopServesOn) {
  transport_->Push("not msgpack at all");
  transport_->Push(Pack({{"id", "lost"}, {"plugin", "no_such_plugin"}}));
  transport_->Push(Pack({{"id", "after"}, {"plugin", "noop"}}));
  msgpack::object_handle first, second, third;
  EXPECT_EQ(transport_->Answer(0, first).at("status").as<std::string>(), "rejected");
  auto unknown = transport_->Answer(1, second);
  EXPECT_EQ(unknown.at("id").as<std::string>(), "lost");
  EXPECT_EQ(unknown.at("status").as<std::string>(), "rejected");
  auto served = transport_->Answer(2, third);
  EXPECT_EQ(served.at("id").as<std::string>(), "after");
  EXPECT_EQ(served.at("status").as<std::string>(), "ok");
}

TEST_F(HostLoopTest, AControlOpFromATaskRouteIsRefusedAndADrainEndsRun) {
  transport_->Push(Pack({{"op", "drain"}}), /*rpc=*/false);
  msgpack::object_handle refused;
  auto answer = transport_->Answer(0, refused);
  EXPECT_EQ(answer.at("status").as<std::string>(), "rejected") << "control requests go to the rpc socket";
  transport_->Push(Pack({{"op", "drain"}}), /*rpc=*/true);
  loop_.join();
  EXPECT_EQ(exit_code_, 0);
  msgpack::object_handle ok;
  EXPECT_EQ(transport_->Answer(1, ok).at("op").as<std::string>(), "drain");
}

}  // namespace
}  // namespace umi
