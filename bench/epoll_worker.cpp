#include "epoll_worker.h"

#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace fairway::bench {
namespace {

constexpr int64_t kReconnectDelayNs = 100'000'000;
constexpr int64_t kTimeoutCheckNs = 50'000'000;
constexpr int64_t kMaxWaitNs = 100'000'000;
constexpr uint32_t kTimerTag = UINT32_MAX;
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxEvents = 64;

std::string ErrnoText(const char* what, int error) {
  return std::string(what) + ": " + std::strerror(error);
}

}  // namespace

EpollWorker::EpollWorker(const sockaddr_in& address, size_t connections, uint16_t first_stream,
                         CodecFactory make_codec, RunPlan plan, uint32_t batch, size_t tenants)
    : address_(address),
      plan_(plan),
      batch_(batch),
      tenants_(tenants == 0 ? 1 : tenants),
      connections_(connections),
      schedule_(plan.first_send_ns, plan.rate),
      next_tenant_(plan.first_tenant % tenants_),
      read_buffer_(kReadChunk) {
  for (size_t i = 0; i < connections_.size(); ++i) {
    connections_[i].codec = make_codec(static_cast<uint16_t>(first_stream + i));
  }
  down_ = connections_.size();
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (plan_.rate > 0) timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
}

EpollWorker::~EpollWorker() {
  for (Connection& conn : connections_) {
    if (conn.fd >= 0) close(conn.fd);
  }
  if (timer_fd_ >= 0) close(timer_fd_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

WorkerResult EpollWorker::Run() {
  if (epoll_fd_ < 0 || (plan_.rate > 0 && timer_fd_ < 0)) {
    result_.fatal = ErrnoText("epoll/timerfd setup", errno);
    return std::move(result_);
  }
  if (timer_fd_ >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = kTimerTag;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &ev);
  }

  std::array<epoll_event, kMaxEvents> events{};
  for (;;) {
    int64_t now = NowNs();
    if (down_ > 0) Reconnect(now);
    Generate(now);
    Dispatch(now);
    if (now >= next_timeout_check_ns_) {
      CheckTimeouts(now);
      next_timeout_check_ns_ = now + kTimeoutCheckNs;
    }
    if (GenerationDone(now) && backlog_.empty() && in_flight_ == 0) break;
    if (now >= plan_.drain_deadline_ns) {
      uint64_t abandoned = 0;
      for (const Connection& conn : connections_) {
        bool busy = conn.state == State::kWriting || conn.state == State::kAwaiting;
        if (busy && conn.intended_ns >= plan_.measure_start_ns) ++abandoned;
      }
      for (int64_t intended : backlog_) {
        if (intended >= plan_.measure_start_ns) ++abandoned;
      }
      if (abandoned > 0) {
        result_.failed_requests += abandoned;
        result_.AddErrorSample(std::to_string(abandoned) +
                               " requests still unanswered or unsent at the drain deadline");
      }
      break;
    }

    int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), WaitMillis(now));
    if (n < 0) {
      if (errno == EINTR) continue;
      result_.fatal = ErrnoText("epoll_wait", errno);
      break;
    }
    for (int i = 0; i < n; ++i) {
      uint32_t index = events[i].data.u32;
      uint32_t flags = events[i].events;
      if (index == kTimerTag) {
        uint64_t expirations = 0;
        [[maybe_unused]] ssize_t r = read(timer_fd_, &expirations, sizeof expirations);
        timer_armed_ns_ = -1;
        continue;
      }
      Connection& conn = connections_[index];
      switch (conn.state) {
        case State::kConnecting:
          FinishConnect(index);
          break;
        case State::kWriting:
          if (flags & (EPOLLOUT | EPOLLERR | EPOLLHUP)) Write(index);
          if ((conn.state == State::kWriting || conn.state == State::kAwaiting) &&
              (flags & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
            Read(index);
          }
          break;
        case State::kAwaiting:
        case State::kIdle:
          if (flags & (EPOLLIN | EPOLLERR | EPOLLHUP)) Read(index);
          break;
        case State::kDown:
          break;  // event for a socket closed earlier in this batch
      }
    }
  }
  return std::move(result_);
}

bool EpollWorker::Open(uint32_t index, int64_t now) {
  Connection& conn = connections_[index];
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ++result_.connect_failures;
    result_.AddErrorSample(ErrnoText("socket", errno));
    return false;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc = connect(fd, reinterpret_cast<const sockaddr*>(&address_), sizeof address_);
  bool pending = rc != 0 && errno == EINPROGRESS;
  if (rc != 0 && !pending) {
    ++result_.connect_failures;
    result_.AddErrorSample(ErrnoText("connect", errno));
    close(fd);
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | (pending ? uint32_t{EPOLLOUT} : 0u);
  ev.data.u32 = index;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    result_.AddErrorSample(ErrnoText("epoll_ctl", errno));
    close(fd);
    return false;
  }
  conn.fd = fd;
  conn.in.clear();
  conn.codec->Reset();
  conn.watching_out = pending;
  conn.sent_ns = now;  // connect timeout counts from here
  conn.state = pending ? State::kConnecting : State::kIdle;
  if (!pending) idle_.push_back(index);
  return true;
}

void EpollWorker::Close(uint32_t index, int64_t retry_at) {
  Connection& conn = connections_[index];
  if (conn.state == State::kDown) return;
  if (conn.fd >= 0) close(conn.fd);
  conn.fd = -1;
  conn.state = State::kDown;
  conn.watching_out = false;
  conn.in.clear();
  conn.retry_at_ns = retry_at;
  ++down_;
}

void EpollWorker::Fail(uint32_t index, const std::string& reason, int64_t now) {
  Connection& conn = connections_[index];
  int64_t retry_at = now;
  if (conn.state == State::kWriting || conn.state == State::kAwaiting) {
    Finish(conn, false, reason, now);
  } else if (conn.state == State::kConnecting) {
    ++result_.connect_failures;
    result_.AddErrorSample(reason);
    retry_at = now + kReconnectDelayNs;
  }
  Close(index, retry_at);
}

void EpollWorker::Watch(uint32_t index, bool out) {
  Connection& conn = connections_[index];
  epoll_event ev{};
  ev.events = EPOLLIN | (out ? uint32_t{EPOLLOUT} : 0u);
  ev.data.u32 = index;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn.fd, &ev);
  conn.watching_out = out;
}

void EpollWorker::Reconnect(int64_t now) {
  if (GenerationDone(now) && backlog_.empty()) return;  // nothing left to send
  for (uint32_t i = 0; i < connections_.size(); ++i) {
    Connection& conn = connections_[i];
    if (conn.state != State::kDown || conn.retry_at_ns > now) continue;
    if (Open(i, now)) {
      --down_;
    } else {
      conn.retry_at_ns = now + kReconnectDelayNs;
    }
  }
}

bool EpollWorker::MayStartClosed(int64_t now) const {
  return now < plan_.stop_ns && planned_measured_ < plan_.max_requests;
}

bool EpollWorker::GenerationDone(int64_t now) const {
  if (plan_.rate <= 0) return !MayStartClosed(now);
  return schedule_.next_ns() >= plan_.stop_ns || planned_measured_ >= plan_.max_requests;
}

void EpollWorker::Generate(int64_t now) {
  if (plan_.rate <= 0) return;
  while (!GenerationDone(now)) {
    int64_t intended = schedule_.next_ns();
    if (intended > now) break;
    backlog_.push_back(intended);
    if (intended >= plan_.measure_start_ns) ++planned_measured_;
    schedule_.Advance();
  }
}

void EpollWorker::Dispatch(int64_t now) {
  if (plan_.rate <= 0) {
    while (!idle_.empty() && MayStartClosed(now)) {
      uint32_t index = idle_.back();
      idle_.pop_back();
      if (connections_[index].state != State::kIdle) continue;
      now = NowNs();
      if (now >= plan_.measure_start_ns) ++planned_measured_;
      Send(index, now, now);
    }
    return;
  }
  while (!backlog_.empty() && !idle_.empty()) {
    uint32_t index = idle_.back();
    idle_.pop_back();
    if (connections_[index].state != State::kIdle) continue;
    int64_t intended = backlog_.front();
    backlog_.pop_front();
    Send(index, intended, NowNs());
  }
}

void EpollWorker::CheckTimeouts(int64_t now) {
  for (uint32_t i = 0; i < connections_.size(); ++i) {
    const Connection& conn = connections_[i];
    bool waiting = conn.state == State::kWriting || conn.state == State::kAwaiting ||
                   conn.state == State::kConnecting;
    if (waiting && now - conn.sent_ns > plan_.request_timeout_ns) {
      Fail(i, conn.state == State::kConnecting ? "connect timed out" : "no answer within timeout",
           now);
    }
  }
}

int EpollWorker::WaitMillis(int64_t now) {
  int64_t wake = std::min(now + kMaxWaitNs, plan_.drain_deadline_ns);
  if (down_ > 0) {
    for (const Connection& conn : connections_) {
      if (conn.state == State::kDown) wake = std::min(wake, conn.retry_at_ns);
    }
  }
  if (plan_.rate > 0 && backlog_.empty() && !GenerationDone(now)) {
    // Sub-millisecond precision for the next intended send comes from the timerfd.
    int64_t next = schedule_.next_ns();
    if (next != timer_armed_ns_) {
      itimerspec spec{};
      spec.it_value.tv_sec = next / kNanosPerSecond;
      spec.it_value.tv_nsec = next % kNanosPerSecond;
      timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
      timer_armed_ns_ = next;
    }
  }
  if (wake <= now) return 0;
  return static_cast<int>((wake - now + 999'999) / 1'000'000);
}

void EpollWorker::Send(uint32_t index, int64_t intended, int64_t now) {
  Connection& conn = connections_[index];
  size_t tenant = next_tenant_;
  next_tenant_ = (next_tenant_ + plan_.tenant_step) % tenants_;
  std::span<const iovec> buffers = conn.codec->Prepare(tenant, timestamps_.Now());
  conn.iov_count = std::min(buffers.size(), conn.iov.size());
  std::copy_n(buffers.begin(), conn.iov_count, conn.iov.begin());
  conn.iov_next = 0;
  conn.intended_ns = intended;
  conn.sent_ns = now;
  conn.state = State::kWriting;
  ++in_flight_;
  Write(index);
}

void EpollWorker::Write(uint32_t index) {
  Connection& conn = connections_[index];
  for (;;) {
    while (conn.iov_next < conn.iov_count && conn.iov[conn.iov_next].iov_len == 0) ++conn.iov_next;
    if (conn.iov_next == conn.iov_count) break;
    msghdr msg{};
    msg.msg_iov = &conn.iov[conn.iov_next];
    msg.msg_iovlen = conn.iov_count - conn.iov_next;
    ssize_t n = sendmsg(conn.fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!conn.watching_out) Watch(index, true);
        return;
      }
      Fail(index, ErrnoText("send", errno), NowNs());
      return;
    }
    auto left = static_cast<size_t>(n);
    while (left > 0 && conn.iov_next < conn.iov_count) {
      iovec& v = conn.iov[conn.iov_next];
      if (left >= v.iov_len) {
        left -= v.iov_len;
        ++conn.iov_next;
      } else {
        v.iov_base = static_cast<char*>(v.iov_base) + left;
        v.iov_len -= left;
        left = 0;
      }
    }
  }
  conn.state = State::kAwaiting;
  if (conn.watching_out) Watch(index, false);
}

void EpollWorker::Read(uint32_t index) {
  Connection& conn = connections_[index];
  bool eof = false;
  for (;;) {
    ssize_t n = recv(conn.fd, read_buffer_.data(), read_buffer_.size(), 0);
    if (n > 0) {
      conn.in.append(read_buffer_.data(), static_cast<size_t>(n));
      if (static_cast<size_t>(n) < read_buffer_.size()) break;
      continue;
    }
    if (n == 0) {
      eof = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    Fail(index, ErrnoText("recv", errno), NowNs());
    return;
  }

  int64_t now = NowNs();
  if (conn.state != State::kWriting && conn.state != State::kAwaiting) {
    // Nothing was asked: stray bytes, or the server closing an idle connection.
    conn.in.clear();
    if (eof) Close(index, now);
    return;
  }
  bool was_writing = conn.state == State::kWriting;
  Reply reply = conn.codec->Consume(&conn.in, eof);
  switch (reply.state) {
    case Reply::State::kIncomplete:
      return;
    case Reply::State::kBroken:
      Fail(index, reply.error, now);
      return;
    case Reply::State::kOk:
    case Reply::State::kFailed:
      Finish(conn, reply.state == Reply::State::kOk, reply.error, now);
      // An answer that came before the request was fully written, or trailing bytes, leave
      // the stream out of step: start over on a new connection.
      if (reply.close || eof || was_writing || !conn.in.empty()) {
        Close(index, now);
      } else {
        MarkIdle(index);
      }
      return;
  }
}

void EpollWorker::FinishConnect(uint32_t index) {
  Connection& conn = connections_[index];
  int error = 0;
  socklen_t length = sizeof error;
  if (getsockopt(conn.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
  if (error != 0) {
    Fail(index, ErrnoText("connect", error), NowNs());
    return;
  }
  Watch(index, false);
  MarkIdle(index);
}

void EpollWorker::Finish(Connection& conn, bool ok, const std::string& error, int64_t now) {
  --in_flight_;
  if (!ok) result_.AddErrorSample(error);
  if (conn.intended_ns < plan_.measure_start_ns) return;
  if (ok) {
    ++result_.ok_requests;
    result_.events += batch_;
    result_.latencies.Record(now - conn.intended_ns);
  } else {
    ++result_.failed_requests;
  }
  result_.last_completion_ns = std::max(result_.last_completion_ns, now);
}

void EpollWorker::MarkIdle(uint32_t index) {
  connections_[index].state = State::kIdle;
  idle_.push_back(index);
}

}  // namespace fairway::bench
