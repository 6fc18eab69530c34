#include "http/server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "http/content_encoding.h"
#include "http/forward.h"

namespace fairway::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

constexpr size_t kReadBufferBytes = 64 * 1024;
constexpr size_t kHeaderLimitBytes = 16 * 1024;
// A connection answered with an error before its request was read is drained for at most this
// long before it is closed, so the client reads the answer instead of a reset.
constexpr auto kLingerTime = std::chrono::seconds(1);
// Connections past the limit that are still being answered 503; past this many, further ones
// are closed without an answer so that refusing never costs more than a bounded effort.
constexpr int kMaxRefusing = 1024;
// An answer must be written within this time.
constexpr auto kWriteTimeout = std::chrono::seconds(30);
// At most one line per this period about failing accepts.
constexpr auto kAcceptLogPeriod = std::chrono::seconds(10);

HttpResponse ErrorResponse(int status, std::string_view code, std::string_view message) {
  HttpResponse r;
  r.status = status;
  r.body =
      fmt::format(R"({{"success":false,"error":{{"code":"{}","message":"{}"}}}})", code, message);
  return r;
}

HttpResponse RetryLater(std::string_view message) {
  HttpResponse r = ErrorResponse(503, "unavailable", message);
  r.headers.emplace_back("Retry-After", "1");
  return r;
}

// What the server and all its sessions share. Owned by HttpServer::Impl; outlives sessions
// (they are destroyed with the io_context, before it).
struct ServerState {
  ServerOptions options;
  Handler* handler = nullptr;
  int max_connections = 0;
  std::atomic<int> connections{0};
  std::atomic<int> refusing{0};
  std::atomic<size_t> buffered{0};

  // Reserves `n` buffered bytes; false when the budget would be exceeded (a request is always
  // admitted when nothing is buffered).
  bool Reserve(size_t n) {
    size_t cur = buffered.load(std::memory_order_relaxed);
    while (true) {
      if (cur > 0 && cur + n > options.max_buffered_bytes) return false;
      if (buffered.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed)) return true;
    }
  }
  void Release(size_t n) { buffered.fetch_sub(n, std::memory_order_relaxed); }
};

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// One client connection, plain (Stream = beast::tcp_stream) or TLS (TlsStream). Runs on its own
// strand; requests on it are handled one at a time. Counted in ServerState::connections from
// construction to destruction.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
  using std::enable_shared_from_this<Session<Stream>>::shared_from_this;
  using std::enable_shared_from_this<Session<Stream>>::weak_from_this;

 public:
  // `tls` (the server's TLS context) only for TlsStream.
  template <class... Tls>
  Session(tcp::socket socket, ServerState* state, Tls&... tls)
      : stream_(std::move(socket), tls...), deadline_(stream_.get_executor()), state_(state) {}
  ~Session() {
    ReleaseBudget();
    if (refusal_) state_->refusing.fetch_sub(1, std::memory_order_relaxed);
    state_->connections.fetch_sub(1, std::memory_order_relaxed);
  }

  void Start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      self->Handshake([self] { self->WaitForRequest(); });
    });
  }

  // Answers `res` at once without reading a request, then closes (a connection past the
  // limit). Counted in ServerState::refusing until destroyed.
  void Refuse(HttpResponse res) {
    refusal_ = true;
    state_->refusing.fetch_add(1, std::memory_order_relaxed);
    net::dispatch(stream_.get_executor(), [self = shared_from_this(), res = std::move(res)]() {
      self->keep_alive_ = false;
      self->Handshake([self, res] { self->Write(res); });
    });
  }

 private:
  const ServerOptions& options() const { return state_->options; }
  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }

  // TLS: the handshake must complete within the read timeout; then `next`. Plain: `next` now.
  template <class Next>
  void Handshake(Next next) {
    if constexpr (kTls) {
      ArmDeadline(std::chrono::seconds(options().read_timeout_seconds));
      stream_.async_handshake(net::ssl::stream_base::server,
                              [self = shared_from_this(), next](beast::error_code ec) {
                                self->DisarmDeadline();
                                if (ec) return self->Close();
                                next();
                              });
    } else {
      next();
    }
  }

  // The deadline of the current read. On expiry the read is cancelled (the socket stays open,
  // so a 408 can still be written). A generation number ignores expiries of earlier deadlines.
  void ArmDeadline(std::chrono::steady_clock::duration d) {
    uint64_t gen = ++deadline_gen_;
    timed_out_ = false;
    deadline_.expires_after(d);
    deadline_.async_wait([weak = weak_from_this(), gen](beast::error_code ec) {
      if (ec) return;
      auto self = weak.lock();
      if (!self || gen != self->deadline_gen_) return;
      self->timed_out_ = true;
      self->tcp().cancel();
    });
  }
  void DisarmDeadline() {
    ++deadline_gen_;
    deadline_.cancel();
  }

  // Idle: waits for the first byte of the next request within the idle timeout. A plain
  // connection holds no read buffer while idle (thousands of idle keep-alive connections
  // would otherwise hold kReadBufferBytes each): it waits until the socket is readable, then
  // takes the buffer. TLS may hold decrypted bytes the socket does not show, so a TLS
  // connection reads at once.
  void WaitForRequest() {
    if (buffer_.size() > 0) return ReadHeader();  // pipelined: already here
    ArmDeadline(std::chrono::seconds(options().idle_timeout_seconds));
    if constexpr (!kTls) {
      buffer_.shrink_to_fit();
      tcp().socket().async_wait(tcp::socket::wait_read,
                                [self = shared_from_this()](beast::error_code ec) {
                                  if (ec) {
                                    self->DisarmDeadline();
                                    return self->Close();  // idle timeout, reset
                                  }
                                  self->ReadFirstBytes();
                                });
    } else {
      ReadFirstBytes();
    }
  }

  // The first bytes of a request, into a buffer of kReadBufferBytes (fewer syscalls per batch).
  // Runs under the idle deadline armed by WaitForRequest.
  void ReadFirstBytes() {
    stream_.async_read_some(buffer_.prepare(kReadBufferBytes),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->DisarmDeadline();
                              if (ec) return self->Close();  // idle timeout, EOF, reset
                              self->buffer_.commit(n);
                              self->ReadHeader();
                            });
  }

  // A request has begun: its header and body must arrive within the read timeout.
  void ReadHeader() {
    parser_.emplace();
    parser_->body_limit(options().max_body_bytes);
    parser_->header_limit(kHeaderLimitBytes);
    ArmDeadline(std::chrono::seconds(options().read_timeout_seconds));
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    const auto& header = parser_->get();
    encoding_ = ParseContentEncoding(header[bhttp::field::content_encoding]);
    if (encoding_ == ContentEncoding::kUnsupported) {
      return Reject(ErrorResponse(
          415, "unsupported_media_type",
          fmt::format("Content-Encoding '{}' is not supported; use gzip, deflate or identity",
                      SafeText(header[bhttp::field::content_encoding]))));
    }
    HttpRequest head;
    head.method = std::string(header.method_string());
    head.target = std::string(header.target());
    head.authorization = std::string(header[bhttp::field::authorization]);
    head.content_type = std::string(header[bhttp::field::content_type]);
    head.forwarded_by = std::string(header[kForwardedByHeader]);
    head.origin = std::string(header[bhttp::field::origin]);
    origin_ = head.origin;
    if (auto refusal = state_->handler->Screen(head)) return Reject(std::move(*refusal));
    // Bytes this request will hold: its body, the decoded body, or the most a chunked body may
    // take.
    size_t body = parser_->content_length() ? static_cast<size_t>(*parser_->content_length())
                  : parser_->chunked()      ? options().max_body_bytes
                                            : 0;
    if (body > options().max_body_bytes) {
      return Reject(ErrorResponse(413, "too_large",
                                  fmt::format("request body is larger than the limit of {} bytes",
                                              options().max_body_bytes)));
    }
    if (encoding_ != ContentEncoding::kIdentity) body += options().max_body_bytes;
    if (body > 0) {
      if (!state_->Reserve(body)) {
        return Reject(RetryLater("the server is holding too many request bytes; retry later"));
      }
      reserved_ += body;
    }
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  // Answers before the body is read; the connection then closes.
  void Reject(HttpResponse res) {
    DisarmDeadline();
    keep_alive_ = false;
    // A browser may read why its request was refused before any tenant was known.
    if (!origin_.empty()) {
      res.headers.emplace_back("Access-Control-Allow-Origin", origin_);
      res.headers.emplace_back("Vary", "Origin");
    }
    Write(std::move(res));
  }

  void OnReadError(beast::error_code ec) {
    DisarmDeadline();
    if (timed_out_) {
      // The request began (its first bytes arrived) but did not arrive in full in time.
      keep_alive_ = false;
      return Write(ErrorResponse(
          408, "request_timeout",
          fmt::format("the request did not arrive in full within {} s (header or body stalled, "
                      "or body shorter than its Content-Length)",
                      options().read_timeout_seconds)));
    }
    if (ec == bhttp::error::body_limit) {
      keep_alive_ = false;
      return Write(ErrorResponse(413, "too_large",
                                 fmt::format("request body is larger than the limit of {} bytes",
                                             options().max_body_bytes)));
    }
    if (ec == bhttp::error::header_limit) {
      keep_alive_ = false;
      return Write(ErrorResponse(431, "too_large", "request headers are too large"));
    }
    if (ec == bhttp::error::bad_target || ec == bhttp::error::bad_method ||
        ec == bhttp::error::bad_version || ec == bhttp::error::bad_field ||
        ec == bhttp::error::bad_value || ec == bhttp::error::bad_content_length ||
        ec == bhttp::error::bad_chunk) {
      keep_alive_ = false;
      return Write(ErrorResponse(400, "invalid_argument", "malformed HTTP request"));
    }
    Close();  // end of stream, reset: nothing to answer
  }

  void OnRead(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    DisarmDeadline();
    auto msg = parser_->release();
    keep_alive_ = msg.keep_alive();
    HttpRequest req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.authorization = std::string(msg[bhttp::field::authorization]);
    req.content_type = std::string(msg[bhttp::field::content_type]);
    req.forwarded_by = std::string(msg[kForwardedByHeader]);
    req.origin = std::string(msg[bhttp::field::origin]);
    req.user_agent = std::string(msg[bhttp::field::user_agent]);
    req.host = std::string(msg[bhttp::field::host]);
    req.forwarded_proto = std::string(msg["X-Forwarded-Proto"]);
    if (options().trust_forwarded_for) {
      std::string_view xff = msg["X-Forwarded-For"];
      xff = xff.substr(0, xff.find(','));
      while (!xff.empty() && xff.front() == ' ') xff.remove_prefix(1);
      while (!xff.empty() && xff.back() == ' ') xff.remove_suffix(1);
      req.client_ip = std::string(xff.substr(0, 64));
    }
    if (req.client_ip.empty()) req.client_ip = PeerAddress();
    if (encoding_ == ContentEncoding::kIdentity) {
      req.body = std::move(msg.body());
    } else {
      auto decoded = DecodeBody(encoding_, msg.body(), options().max_body_bytes);
      if (!decoded.ok()) {
        bool too_large = decoded.status().code() == StatusCode::kTooLarge;
        if (too_large) keep_alive_ = false;
        return Write(ErrorResponse(too_large ? 413 : 400,
                                   too_large ? "too_large" : "invalid_argument",
                                   decoded.status().message()));
      }
      req.body = std::move(decoded).value();
    }
    state_->handler->Handle(std::move(req), [self = shared_from_this()](HttpResponse res) {
      net::post(self->stream_.get_executor(),
                [self, res = std::move(res)]() mutable { self->Write(std::move(res)); });
    });
  }

  // The connection's peer, looked up once per connection.
  const std::string& PeerAddress() {
    if (peer_address_.empty()) {
      beast::error_code ec;
      auto peer = tcp().socket().remote_endpoint(ec);
      if (!ec) {
        auto address = peer.address();
        // An IPv4 client on a dual-stack socket reads as ::ffff:a.b.c.d.
        if (address.is_v6() && address.to_v6().is_v4_mapped()) {
          address = net::ip::make_address_v4(net::ip::v4_mapped, address.to_v6());
        }
        peer_address_ = address.to_string();
      }
    }
    return peer_address_;
  }

  void Write(HttpResponse res) {
    auto msg = std::make_shared<bhttp::response<bhttp::string_body>>();
    msg->version(11);
    msg->result(static_cast<unsigned>(res.status));
    msg->set(bhttp::field::server, "fairway");
    msg->set(bhttp::field::content_type, res.content_type);
    for (auto& [k, v] : res.headers) msg->set(k, v);
    // Whoever produced it, an overload or rate answer says when to come back.
    if ((res.status == 503 || res.status == 429) &&
        msg->find(bhttp::field::retry_after) == msg->end()) {
      msg->set(bhttp::field::retry_after, "1");
    }
    msg->body() = std::move(res.body);
    msg->keep_alive(keep_alive_);
    msg->prepare_payload();
    tcp().expires_after(kWriteTimeout);
    bhttp::async_write(stream_, *msg,
                       [self = shared_from_this(), msg](beast::error_code ec, size_t) {
                         self->tcp().expires_never();
                         self->ReleaseBudget();
                         if (ec) return self->Close();
                         if (!self->keep_alive_) return self->Linger();
                         self->WaitForRequest();
                       });
  }

  // After an answer that ends the connection: ends the sending side, then reads and discards what
  // the client still sends (for at most kLingerTime) so that closing does not reset the answer it
  // has not read yet.
  void Linger() {
    beast::error_code ec;
    tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return Close();
    if (!lingering_) {
      lingering_ = true;
      ArmDeadline(kLingerTime);
    }
    buffer_.clear();
    stream_.async_read_some(buffer_.prepare(kReadBufferBytes),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) {
                                self->DisarmDeadline();
                                return self->Close();
                              }
                              self->Linger();
                            });
  }

  void Close() {
    DisarmDeadline();
    beast::error_code ec;
    tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
    tcp().socket().close(ec);
  }

  void ReleaseBudget() {
    if (reserved_ > 0) state_->Release(reserved_);
    reserved_ = 0;
  }

  // A header value as it may appear in a JSON message: printable ASCII without quotes or
  // backslashes, at most 40 characters.
  static std::string SafeText(std::string_view v) {
    std::string out;
    for (char c : v.substr(0, 40)) {
      if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') out.push_back(c);
    }
    return out;
  }

  Stream stream_;
  net::steady_timer deadline_;
  uint64_t deadline_gen_ = 0;
  bool timed_out_ = false;
  beast::flat_buffer buffer_;
  ServerState* state_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  ContentEncoding encoding_ = ContentEncoding::kIdentity;
  size_t reserved_ = 0;
  bool keep_alive_ = true;
  std::string origin_;        // the current request's Origin header
  std::string peer_address_;  // PeerAddress(), once known
  bool lingering_ = false;
  bool refusal_ = false;
};

bool IsResourceShortage(const beast::error_code& ec) {
  return ec == net::error::no_descriptors || ec == net::error::no_buffer_space ||
         ec == net::error::no_memory || ec == boost::system::errc::too_many_files_open_in_system;
}

// max_connections lowered so that the store keeps file descriptors: raises the soft
// RLIMIT_NOFILE to the hard limit, then leaves a quarter of it (64 to 4096) to everything else.
int CapConnectionsByFileLimit(int wanted) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return wanted;
  if (rl.rlim_cur != RLIM_INFINITY && (rl.rlim_max == RLIM_INFINITY || rl.rlim_cur < rl.rlim_max)) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max == RLIM_INFINITY ? rlim_t{1} << 20 : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  if (rl.rlim_cur == RLIM_INFINITY) return wanted;
  rlim_t limit = rl.rlim_cur;
  rlim_t reserve = std::clamp<rlim_t>(limit / 4, 64, 4096);
  rlim_t cap = limit > reserve + 1 ? limit - reserve : 1;
  if (static_cast<rlim_t>(wanted) <= cap) return wanted;
  spdlog::warn(
      "server.max_connections lowered from {} to {}: the file descriptor limit is {} and {} are "
      "kept for the store",
      wanted, cap, limit, reserve);
  return static_cast<int>(cap);
}

bool IsLoopback(const net::ip::address& a) {
  if (a.is_loopback()) return true;
  return a.is_v6() && a.to_v6().is_v4_mapped() &&
         net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()).is_loopback();
}

}  // namespace

struct HttpServer::Impl {
  ServerState state;
  std::optional<net::ssl::context> tls;
  net::io_context ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  // The accept chain (acceptor, back-off timer, the counters below) runs on one strand, and so
  // does Stop()'s close: with several I/O threads they would otherwise race.
  net::strand<net::io_context::executor_type> accept_strand{net::make_strand(ioc)};
  tcp::acceptor acceptor{accept_strand};
  net::steady_timer accept_backoff{accept_strand};
  std::vector<std::thread> threads;
  uint16_t port = 0;
  // Rate-limited logging of failing accepts (only the accept chain touches these).
  std::chrono::steady_clock::time_point last_accept_log{};
  uint64_t unlogged_accept_failures = 0;

  void Accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
      if (ec) return OnAcceptFailure(ec);
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      int open = state.connections.fetch_add(1, std::memory_order_relaxed);
      if (tls) {
        Admit(std::make_shared<Session<TlsStream>>(std::move(socket), &state, *tls), open);
      } else {
        Admit(std::make_shared<Session<beast::tcp_stream>>(std::move(socket), &state), open);
      }
      Accept();
    });
  }

  template <class S>
  void Admit(const std::shared_ptr<S>& session, int open) {
    if (open < state.max_connections) {
      session->Start();
    } else if (state.refusing.load(std::memory_order_relaxed) < kMaxRefusing) {
      // Over the limit: a fast 503 (or, when already refusing many, an immediate close as
      // `session` goes out of scope).
      session->Refuse(
          RetryLater(fmt::format("the server has reached its limit of {} connections; retry later",
                                 state.max_connections)));
    }
  }

  // Never a busy loop: a failing accept waits (longer when descriptors or memory ran out)
  // before the next one, and is logged at most once per kAcceptLogPeriod with a count.
  void OnAcceptFailure(const beast::error_code& ec) {
    bool shortage = IsResourceShortage(ec);
    ++unlogged_accept_failures;
    auto now = std::chrono::steady_clock::now();
    if (now - last_accept_log >= kAcceptLogPeriod) {
      spdlog::warn(
          "accept failed: {} ({} failure(s) since the last report); pausing accepts for {} ms",
          ec.message(), unlogged_accept_failures, shortage ? state.options.accept_backoff_ms : 10);
      last_accept_log = now;
      unlogged_accept_failures = 0;
    }
    accept_backoff.expires_after(
        std::chrono::milliseconds(shortage ? state.options.accept_backoff_ms : 10));
    accept_backoff.async_wait([this](beast::error_code wec) {
      if (!wec && acceptor.is_open()) Accept();
    });
  }
};

HttpServer::HttpServer(ServerOptions options, Handler* handler) : impl_(std::make_unique<Impl>()) {
  impl_->state.options = std::move(options);
  impl_->state.handler = handler;
}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start() {
  const ServerOptions& o = impl_->state.options;
  auto positive = [](std::string_view name, long long v) -> Status {
    if (v >= 1) return Status::Ok();
    return InvalidArgument(fmt::format("server option '{}' must be at least 1, not {}", name, v));
  };
  for (Status st :
       {positive("read_timeout_seconds", o.read_timeout_seconds),
        positive("idle_timeout_seconds", o.idle_timeout_seconds),
        positive("max_connections", o.max_connections),
        positive("max_body_bytes", static_cast<long long>(o.max_body_bytes)),
        positive("max_buffered_bytes", static_cast<long long>(o.max_buffered_bytes)),
        positive("accept_backoff_ms", o.accept_backoff_ms), positive("io_threads", o.io_threads)}) {
    if (!st.ok()) return st;
  }
  beast::error_code ec;
  auto address = net::ip::make_address(o.host, ec);
  if (ec) {
    return InvalidArgument(
        fmt::format("listen address '{}' is not an IP address: {}", o.host, ec.message()));
  }
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return InvalidArgument("server options 'tls_cert_file' and 'tls_key_file' go together");
  }
  if (!o.tls_cert_file.empty()) {
    auto& ctx = impl_->tls.emplace(net::ssl::context::tls_server);
    ctx.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                    net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                    net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use);
    ctx.use_certificate_chain_file(o.tls_cert_file, ec);
    if (ec) {
      return InvalidArgument(
          fmt::format("server option 'tls_cert_file' ('{}'): {}", o.tls_cert_file, ec.message()));
    }
    ctx.use_private_key_file(o.tls_key_file, net::ssl::context::pem, ec);
    if (ec) {
      return InvalidArgument(
          fmt::format("server option 'tls_key_file' ('{}'): {}", o.tls_key_file, ec.message()));
    }
  }
  impl_->state.max_connections = CapConnectionsByFileLimit(o.max_connections);
  tcp::endpoint endpoint(address, o.port);
  auto& acc = impl_->acceptor;
  acc.open(endpoint.protocol(), ec);
  if (!ec) acc.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(endpoint, ec);
  if (!ec) acc.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Unavailable(fmt::format("cannot listen on {}:{}: {}", o.host, o.port, ec.message()));
  }
  impl_->port = acc.local_endpoint().port();
  if (!IsLoopback(address) && !impl_->tls) {
    spdlog::warn(
        "listening on {}:{} without TLS: credentials and data cross the network in clear; set "
        "server.tls_cert_file and server.tls_key_file, or listen on a loopback address",
        o.host, impl_->port);
  }
  impl_->work.emplace(impl_->ioc.get_executor());
  impl_->Accept();
  for (int i = 0; i < o.io_threads; ++i) {
    impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  }
  return Status::Ok();
}

uint16_t HttpServer::port() const { return impl_->port; }

int HttpServer::max_connections() const { return impl_->state.max_connections; }

int HttpServer::open_connections() const {
  return impl_->state.connections.load(std::memory_order_relaxed);
}

size_t HttpServer::buffered_bytes() const {
  return impl_->state.buffered.load(std::memory_order_relaxed);
}

void HttpServer::Stop() {
  if (impl_->threads.empty()) return;
  net::post(impl_->accept_strand, [this] {
    beast::error_code ec;
    impl_->acceptor.close(ec);
    impl_->accept_backoff.cancel();
  });
  impl_->work.reset();
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
}

}  // namespace fairway::http
