#pragma once
// A single-threaded epoll event loop driving many non-blocking keep-alive connections.

#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "request_codec.h"
#include "run_plan.h"

namespace fairway::bench {

// One thread's share of the connections to an HTTP or RESP server. Each connection carries at
// most one request at a time (a Redis "request" is a whole pipeline). Closed loop: an idle
// connection sends at once. Open loop: requests are intended on a fixed schedule, queue while
// every connection is busy, and their latency counts from the intended time.
class EpollWorker {
 public:
  using CodecFactory = std::function<std::unique_ptr<RequestCodec>(uint16_t stream)>;

  EpollWorker(const sockaddr_in& address, size_t connections, uint16_t first_stream,
              CodecFactory make_codec, RunPlan plan, uint32_t batch, size_t tenants);
  ~EpollWorker();
  EpollWorker(const EpollWorker&) = delete;
  EpollWorker& operator=(const EpollWorker&) = delete;

  WorkerResult Run();

 private:
  // Where a connection is in its request cycle.
  enum class State { kDown, kConnecting, kIdle, kWriting, kAwaiting };

  // One TCP connection and its request in flight.
  struct Connection {
    int fd = -1;
    State state = State::kDown;
    bool watching_out = false;
    std::unique_ptr<RequestCodec> codec;
    std::array<iovec, 4> iov{};
    size_t iov_count = 0;
    size_t iov_next = 0;
    std::string in;
    int64_t intended_ns = 0;
    int64_t sent_ns = 0;
    int64_t retry_at_ns = 0;
  };

  bool Open(uint32_t index, int64_t now);
  void Close(uint32_t index, int64_t retry_at);
  void Fail(uint32_t index, const std::string& reason, int64_t now);
  void Watch(uint32_t index, bool out);

  void Reconnect(int64_t now);
  void Generate(int64_t now);
  void Dispatch(int64_t now);
  void CheckTimeouts(int64_t now);
  bool MayStartClosed(int64_t now) const;
  bool GenerationDone(int64_t now) const;
  int WaitMillis(int64_t now);

  void Send(uint32_t index, int64_t intended, int64_t now);
  void Write(uint32_t index);
  void Read(uint32_t index);
  void FinishConnect(uint32_t index);
  void Finish(Connection& conn, bool ok, const std::string& error, int64_t now);
  void MarkIdle(uint32_t index);

  sockaddr_in address_;
  RunPlan plan_;
  uint32_t batch_;
  size_t tenants_;
  int epoll_fd_ = -1;
  int timer_fd_ = -1;
  int64_t timer_armed_ns_ = -1;
  std::vector<Connection> connections_;
  std::vector<uint32_t> idle_;
  std::deque<int64_t> backlog_;  // open loop: intended times waiting for a free connection
  IntentSchedule schedule_;
  uint64_t planned_measured_ = 0;
  size_t in_flight_ = 0;
  size_t down_ = 0;
  size_t next_tenant_;
  int64_t next_timeout_check_ns_ = 0;
  TimestampClock timestamps_;
  WorkerResult result_;
  std::vector<char> read_buffer_;
};

}  // namespace fairway::bench
