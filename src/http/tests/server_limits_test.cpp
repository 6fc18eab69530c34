// The server's limits against abusive or broken clients, through raw sockets on loopback:
// connection limit, accept back-off when descriptors run out, request deadlines (408), the
// buffered-bytes budget, Content-Encoding, Retry-After on every 503, screening by header, TLS.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "http/content_encoding.h"
#include "http/server.h"
#include "http/tests/test_client.h"
#include "testing/temp_dir.h"

namespace fairway::http {
namespace {

using ::fairway::testing::TempDir;

using Clock = std::chrono::steady_clock;

// Answers 200 with the request body (so tests see what the handler received); the target
// "/unavailable" answers 503 without a Retry-After header of its own.
class EchoHandler final : public Handler {
 public:
  void Handle(HttpRequest request, Responder respond) override {
    HttpResponse r;
    if (request.target == "/unavailable") {
      r.status = 503;
      r.body = R"({"success":false})";
    } else if (request.target == "/whoami") {
      r.body = request.client_ip;
    } else {
      r.body = std::move(request.body);
    }
    respond(std::move(r));
  }
  // "/screened" is refused from its header alone.
  std::optional<HttpResponse> Screen(const HttpRequest& head) override {
    if (head.target != "/screened") return std::nullopt;
    HttpResponse r;
    r.status = 429;
    r.body = R"({"success":false})";
    return r;
  }
};

// A connected loopback socket; every read gives up after `timeout`.
int Connect(uint16_t port, std::chrono::seconds timeout = std::chrono::seconds(10)) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval tv{static_cast<time_t>(timeout.count()), 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads one response (header and Content-Length body), or whatever arrives until EOF or the
// socket's read timeout.
std::string ReadResponse(int fd) {
  std::string in;
  char buf[65536];
  while (true) {
    auto end = in.find("\r\n\r\n");
    if (end != std::string::npos) {
      auto cl = in.find("Content-Length: ");
      if (cl != std::string::npos && cl < end) {
        size_t len = std::stoul(in.substr(cl + 16));
        if (in.size() >= end + 4 + len) return in;
      }
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return in;
    in.append(buf, static_cast<size_t>(n));
  }
}

// True when the peer has closed the connection (EOF or reset) within the read timeout.
bool PeerClosed(int fd) {
  char c;
  ssize_t n = ::recv(fd, &c, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

int StatusOf(const std::string& response) {
  if (response.size() < 12 || response.rfind("HTTP/1.1 ", 0) != 0) return 0;
  return std::stoi(response.substr(9, 3));
}

bool HasHeader(const std::string& response, std::string_view header) {
  return response.substr(0, response.find("\r\n\r\n")).find(header) != std::string::npos;
}

std::string Post(std::string_view target, std::string_view body,
                 std::string_view extra_headers = "") {
  return fmt::format("POST {} HTTP/1.1\r\nHost: t\r\n{}Content-Length: {}\r\n\r\n{}", target,
                     extra_headers, body.size(), body);
}

std::string Exchange(uint16_t port, const std::string& request) {
  int fd = Connect(port);
  if (fd < 0) return {};
  SendAll(fd, request);
  std::string r = ReadResponse(fd);
  ::close(fd);
  return r;
}

// Waits until `pred` holds (polling a server counter), at most `limit`.
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  auto deadline = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

std::string Compress(std::string_view data, int window_bits) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, data.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

class ServerLimitsTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions opts) {
    opts.port = 0;
    server_ = std::make_unique<HttpServer>(opts, &handler_);
    ASSERT_TRUE(server_->Start().ok());
    port_ = server_->port();
  }
  void TearDown() override {
    for (int fd : fds_) ::close(fd);
    if (server_) server_->Stop();
  }
  int Open() {
    int fd = Connect(port_);
    if (fd >= 0) fds_.push_back(fd);
    return fd;
  }

  EchoHandler handler_;
  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
  std::vector<int> fds_;
};

TEST_F(ServerLimitsTest, TheClientsAddressIsThePeerUnlessAProxyIsTrusted) {
  StartServer({});
  TestClient c("http://127.0.0.1:" + std::to_string(port_));
  EXPECT_EQ(c.Request("GET", "/whoami").body, "127.0.0.1");
  EXPECT_EQ(c.Request("GET", "/whoami", {}, {"X-Forwarded-For: 203.0.113.5"}).body, "127.0.0.1");
  // A refusal before the request is read still lets a browser read it.
  auto screened = c.Request("POST", "/screened", "x", {"Origin: https://shop.example.com"});
  EXPECT_EQ(screened.status, 429);
  EXPECT_EQ(screened.headers["access-control-allow-origin"], "https://shop.example.com");
  server_->Stop();

  ServerOptions trusting;
  trusting.trust_forwarded_for = true;
  StartServer(trusting);
  TestClient t("http://127.0.0.1:" + std::to_string(port_));
  EXPECT_EQ(t.Request("GET", "/whoami", {}, {"X-Forwarded-For:  203.0.113.5 , 10.0.0.1"}).body,
            "203.0.113.5");
  EXPECT_EQ(t.Request("GET", "/whoami", {}, {"X-Forwarded-For: 2001:db8::1"}).body, "2001:db8::1");
  EXPECT_EQ(t.Request("GET", "/whoami").body, "127.0.0.1");
}

TEST_F(ServerLimitsTest, OptionsOutOfRangeAreRejectedByName) {
  struct Case {
    const char* name;
    void (*set)(ServerOptions*);
  } cases[] = {
      {"read_timeout_seconds", [](ServerOptions* o) { o->read_timeout_seconds = 0; }},
      {"idle_timeout_seconds", [](ServerOptions* o) { o->idle_timeout_seconds = -1; }},
      {"max_connections", [](ServerOptions* o) { o->max_connections = 0; }},
      {"max_buffered_bytes", [](ServerOptions* o) { o->max_buffered_bytes = 0; }},
      {"accept_backoff_ms", [](ServerOptions* o) { o->accept_backoff_ms = 0; }},
  };
  for (const auto& c : cases) {
    ServerOptions o;
    o.port = 0;
    c.set(&o);
    HttpServer s(o, &handler_);
    Status st = s.Start();
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(st.message().find(c.name), std::string::npos) << st.message();
  }
}

TEST_F(ServerLimitsTest, ConnectionLimitIsCappedByTheFileDescriptorLimit) {
  ServerOptions o;
  o.max_connections = 100'000'000;
  StartServer(o);
  rlimit rl{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  EXPECT_LT(static_cast<rlim_t>(server_->max_connections()), rl.rlim_cur);
  EXPECT_GE(server_->max_connections(), 1);
}

TEST_F(ServerLimitsTest, ConnectionsPastTheLimitGetAFast503WithRetryAfter) {
  ServerOptions o;
  o.max_connections = 5;
  StartServer(o);
  for (int i = 0; i < 5; ++i) ASSERT_GE(Open(), 0);
  ASSERT_TRUE(WaitFor([&] { return server_->open_connections() == 5; }));
  // The sixth is answered at once, without sending anything, and closed.
  auto start = Clock::now();
  int extra = Open();
  ASSERT_GE(extra, 0);
  std::string r = ReadResponse(extra);
  EXPECT_EQ(StatusOf(r), 503) << r;
  EXPECT_TRUE(HasHeader(r, "Retry-After: 1")) << r;
  EXPECT_NE(r.find("limit of 5 connections"), std::string::npos) << r;
  EXPECT_TRUE(PeerClosed(extra));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
  // The idle ones still work, and once one leaves, a new client is served.
  ASSERT_TRUE(SendAll(fds_[0], Post("/a", "hello")));
  EXPECT_EQ(StatusOf(ReadResponse(fds_[0])), 200);
  ::close(fds_[1]);
  fds_.erase(fds_.begin() + 1);
  ASSERT_TRUE(WaitFor([&] { return server_->open_connections() <= 4; }));
  EXPECT_EQ(StatusOf(Exchange(port_, Post("/b", "x"))), 200);
}

TEST_F(ServerLimitsTest, StalledHeaderGets408WithinTheReadTimeout) {
  ServerOptions o;
  o.read_timeout_seconds = 1;
  StartServer(o);
  int fd = Open();
  auto start = Clock::now();
  ASSERT_TRUE(SendAll(fd, "POST /v1/track HTTP/1.1\r\nHost: t\r\nContent-Le"));
  std::string r = ReadResponse(fd);
  auto took = Clock::now() - start;
  EXPECT_EQ(StatusOf(r), 408) << r;
  EXPECT_NE(r.find("\"request_timeout\""), std::string::npos) << r;
  EXPECT_TRUE(PeerClosed(fd));
  EXPECT_GE(took, std::chrono::milliseconds(900));
  EXPECT_LT(took, std::chrono::seconds(3));
}

TEST_F(ServerLimitsTest, BodyShorterThanContentLengthGets408) {
  ServerOptions o;
  o.read_timeout_seconds = 1;
  StartServer(o);
  int fd = Open();
  auto start = Clock::now();
  ASSERT_TRUE(
      SendAll(fd, "POST /v1/track HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"a\":1"));
  std::string r = ReadResponse(fd);
  EXPECT_EQ(StatusOf(r), 408) << r;
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
  EXPECT_TRUE(PeerClosed(fd));
  EXPECT_EQ(server_->buffered_bytes(), 0u);
}

TEST_F(ServerLimitsTest, IdleConnectionIsClosedWithoutAnAnswer) {
  ServerOptions o;
  o.idle_timeout_seconds = 1;
  o.read_timeout_seconds = 1;
  StartServer(o);
  int fd = Open();
  // A complete request first: the deadline applies between requests too.
  ASSERT_TRUE(SendAll(fd, Post("/a", "x")));
  EXPECT_EQ(StatusOf(ReadResponse(fd)), 200);
  auto start = Clock::now();
  EXPECT_EQ(ReadResponse(fd), "");  // EOF, no 408 for a connection between requests
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
}

// Resident memory of this process, in bytes (VmRSS).
size_t ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

// A keep-alive connection waiting for its next request holds no read buffer: a thousand idle
// connections that each sent a 48 KB request cost far less than a thousand 64 KiB buffers.
TEST_F(ServerLimitsTest, IdleKeepAliveConnectionsHoldNoReadBuffer) {
  ServerOptions o;
  o.max_connections = 2'000;
  StartServer(o);
  const std::string request = Post("/a", std::string(48 * 1024, 'x'));
  constexpr int kConnections = 1'000;
  const size_t before = ResidentBytes();
  for (int i = 0; i < kConnections; ++i) {
    int fd = Open();
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, request));
    ASSERT_EQ(StatusOf(ReadResponse(fd)), 200) << i;
  }
  EXPECT_EQ(server_->open_connections(), kConnections);
  const size_t grown = ResidentBytes() - std::min(before, ResidentBytes());
  // Holding a touched 64 KiB buffer each would be over 47 MiB.
  EXPECT_LT(grown, size_t{24} << 20) << "grew by " << (grown >> 20) << " MiB";
  // And they still serve their next requests.
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(SendAll(fds_[i], request));
    EXPECT_EQ(StatusOf(ReadResponse(fds_[i])), 200);
  }
}

TEST_F(ServerLimitsTest, BufferedBytesBudgetRefusesBeforeReadingTheBody) {
  ServerOptions o;
  o.max_body_bytes = 600'000;
  o.max_buffered_bytes = 5'000'000;
  StartServer(o);
  // Fifty clients stall inside 510 KB bodies: only what fits the budget is held; the others
  // are refused at once with 503 + Retry-After.
  constexpr size_t kBody = 510'000;
  std::string head =
      fmt::format("POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", kBody);
  std::string part(1000, 'x');
  int refused = 0, held = 0;
  for (int i = 0; i < 50; ++i) {
    int fd = Open();
    ASSERT_GE(fd, 0);
    size_t before = server_->buffered_bytes();
    ASSERT_TRUE(SendAll(fd, head + part));
    // Either the server reserves the body's bytes (held: no answer) or it answers at once.
    pollfd p{fd, POLLIN, 0};
    ASSERT_TRUE(
        WaitFor([&] { return server_->buffered_bytes() > before || ::poll(&p, 1, 0) == 1; }));
    if (server_->buffered_bytes() == before) {
      std::string r = ReadResponse(fd);
      EXPECT_EQ(StatusOf(r), 503) << r;
      EXPECT_TRUE(HasHeader(r, "Retry-After: 1")) << r;
      ++refused;
    } else {
      ++held;
    }
  }
  EXPECT_EQ(held, 9);  // 9 x 510 KB <= 5 MB < 10 x 510 KB
  EXPECT_EQ(refused, 41);
  EXPECT_LE(server_->buffered_bytes(), o.max_buffered_bytes);
  // When the held ones go away, their bytes are released and a new request is served.
  for (int fd : fds_) ::close(fd);
  fds_.clear();
  ASSERT_TRUE(WaitFor([&] { return server_->buffered_bytes() == 0; }));
  EXPECT_EQ(StatusOf(Exchange(port_, Post("/a", std::string(kBody, 'y')))), 200);
}

TEST_F(ServerLimitsTest, OneRequestIsAdmittedEvenWhenLargerThanTheBudget) {
  ServerOptions o;
  o.max_buffered_bytes = 10;
  StartServer(o);
  std::string r = Exchange(port_, Post("/a", std::string(1000, 'z')));
  EXPECT_EQ(StatusOf(r), 200) << r;
  // (Released once the answer is written, which the client may see first.)
  EXPECT_TRUE(WaitFor([&] { return server_->buffered_bytes() == 0; }));
}

TEST_F(ServerLimitsTest, AScreenedRequestIsRefusedBeforeItsBodyIsRead) {
  StartServer(ServerOptions{});
  int fd = Open();
  // Only the header is sent: the answer cannot wait for the body.
  ASSERT_TRUE(SendAll(fd, "POST /screened HTTP/1.1\r\nHost: t\r\nContent-Length: 400000\r\n\r\n"));
  std::string r = ReadResponse(fd);
  EXPECT_EQ(StatusOf(r), 429) << r;
  EXPECT_TRUE(HasHeader(r, "Retry-After: 1")) << r;
  EXPECT_TRUE(HasHeader(r, "Connection: close")) << r;
  EXPECT_EQ(server_->buffered_bytes(), 0u);
}

TEST_F(ServerLimitsTest, Every503CarriesRetryAfter) {
  StartServer(ServerOptions{});
  std::string r = Exchange(port_, Post("/unavailable", "{}"));
  EXPECT_EQ(StatusOf(r), 503) << r;
  EXPECT_TRUE(HasHeader(r, "Retry-After: 1")) << r;
}

TEST_F(ServerLimitsTest, GzipAndDeflateBodiesAreDecoded) {
  StartServer(ServerOptions{});
  std::string body = R"({"userId":"u1","event":"Signed Up","properties":{"plan":"pro"}})";
  struct Case {
    const char* encoding;
    int window_bits;
  } cases[] = {{"gzip", 16 + MAX_WBITS},
               {"x-gzip", 16 + MAX_WBITS},
               {"deflate", MAX_WBITS},
               {"deflate", -MAX_WBITS},
               {"GZip", 16 + MAX_WBITS}};
  for (const auto& c : cases) {
    std::string r = Exchange(port_, Post("/v1/track", Compress(body, c.window_bits),
                                         fmt::format("Content-Encoding: {}\r\n", c.encoding)));
    EXPECT_EQ(StatusOf(r), 200) << c.encoding << " " << c.window_bits;
    EXPECT_NE(r.find(body), std::string::npos) << c.encoding << ": " << r;
  }
  std::string r = Exchange(port_, Post("/v1/track", body, "Content-Encoding: identity\r\n"));
  EXPECT_EQ(StatusOf(r), 200);
  EXPECT_NE(r.find(body), std::string::npos);
}

TEST_F(ServerLimitsTest, UnknownEncodingGets415NamingIt) {
  StartServer(ServerOptions{});
  for (const char* enc : {"br", "compress", "gzip, br", "zstd"}) {
    std::string r =
        Exchange(port_, Post("/v1/track", "abc", fmt::format("Content-Encoding: {}\r\n", enc)));
    EXPECT_EQ(StatusOf(r), 415) << enc << ": " << r;
    EXPECT_NE(r.find(fmt::format("'{}'", enc)), std::string::npos) << r;
  }
}

TEST_F(ServerLimitsTest, ZipBombGets413AndCorruptDataGets400) {
  ServerOptions o;
  o.max_body_bytes = 500 * 1024;
  StartServer(o);
  std::string bomb = Compress(std::string(20u << 20, '0'), 16 + MAX_WBITS);
  ASSERT_LT(bomb.size(), 100'000u);
  std::string r = Exchange(port_, Post("/v1/batch", bomb, "Content-Encoding: gzip\r\n"));
  EXPECT_EQ(StatusOf(r), 413) << r;
  // Exactly at the limit is fine; one byte over is not.
  r = Exchange(port_, Post("/v1/batch", Compress(std::string(o.max_body_bytes, 'a'), MAX_WBITS),
                           "Content-Encoding: deflate\r\n"));
  EXPECT_EQ(StatusOf(r), 200);
  r = Exchange(port_, Post("/v1/batch", Compress(std::string(o.max_body_bytes + 1, 'a'), MAX_WBITS),
                           "Content-Encoding: deflate\r\n"));
  EXPECT_EQ(StatusOf(r), 413);
  r = Exchange(port_, Post("/v1/track", "not gzip at all", "Content-Encoding: gzip\r\n"));
  EXPECT_EQ(StatusOf(r), 400) << r;
  std::string truncated = Compress("{\"a\":\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"}", 16 + MAX_WBITS);
  truncated.resize(truncated.size() / 2);
  r = Exchange(port_, Post("/v1/track", truncated, "Content-Encoding: gzip\r\n"));
  EXPECT_EQ(StatusOf(r), 400) << r;
  EXPECT_TRUE(WaitFor([&] { return server_->buffered_bytes() == 0; }));
}

// Runs a shell command; its exit status.
int Shell(const std::string& command) {
  int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST_F(ServerLimitsTest, TlsListenerServesCurlWithTheTestCa) {
  if (Shell("command -v openssl >/dev/null && command -v curl >/dev/null") != 0) {
    GTEST_SKIP() << "openssl or curl is not installed";
  }
  TempDir dir;
  std::string d = dir.path();
  // A test CA and a server certificate for 127.0.0.1 that it signs.
  std::ofstream(d + "/ext.cnf") << "subjectAltName=IP:127.0.0.1\n";
  std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  ASSERT_EQ(
      Shell(fmt::format("cd {0} && openssl req -x509 {1} -keyout ca.key -out ca.pem "
                        "-subj /CN=fairway-test-ca -days 1 2>/dev/null && "
                        "openssl req {1} -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 "
                        "2>/dev/null && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key "
                        "-CAcreateserial -out srv.pem -days 1 -extfile ext.cnf 2>/dev/null",
                        d, ec)),
      0);
  ServerOptions o;
  o.tls_cert_file = d + "/srv.pem";
  o.tls_key_file = d + "/srv.key";
  StartServer(o);
  std::string url = fmt::format("https://127.0.0.1:{}/echo", port_);
  std::string out = d + "/out.txt";
  EXPECT_EQ(Shell(fmt::format("curl -sS --max-time 10 --cacert {}/ca.pem -d tls-body -o {} {}", d,
                              out, url)),
            0);
  std::ifstream in(out);
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(body, "tls-body");
  // Without the test CA the certificate is not trusted (curl exit 60); plain HTTP gets nothing.
  EXPECT_EQ(Shell(fmt::format("curl -s --max-time 10 -o /dev/null {} 2>/dev/null", url)), 60);
  EXPECT_EQ(StatusOf(Exchange(port_, Post("/echo", "plain"))), 0);
}

TEST_F(ServerLimitsTest, TlsNeedsReadableCertificateAndKey) {
  ServerOptions o;
  o.port = 0;
  o.tls_cert_file = "/nonexistent/cert.pem";
  o.tls_key_file = "/nonexistent/key.pem";
  HttpServer s(o, &handler_);
  Status st = s.Start();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("tls_cert_file"), std::string::npos) << st.message();
  o.tls_key_file.clear();
  HttpServer half(o, &handler_);
  EXPECT_EQ(half.Start().code(), StatusCode::kInvalidArgument);
}

TEST(ContentEncodingTest, EmptyBodiesAndNames) {
  EXPECT_EQ(ParseContentEncoding(""), ContentEncoding::kIdentity);
  EXPECT_EQ(ParseContentEncoding(" Identity "), ContentEncoding::kIdentity);
  EXPECT_EQ(ParseContentEncoding("deflate"), ContentEncoding::kDeflate);
  EXPECT_EQ(ParseContentEncoding("gzip,gzip"), ContentEncoding::kUnsupported);
  auto empty = DecodeBody(ContentEncoding::kGzip, Compress("", 16 + MAX_WBITS), 10);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");
  EXPECT_FALSE(DecodeBody(ContentEncoding::kGzip, "", 10).ok());
  EXPECT_EQ(DecodeBody(ContentEncoding::kGzip, Compress("ab", 16 + MAX_WBITS), 1).status().code(),
            StatusCode::kTooLarge);
  // Data after the end of the stream (a second gzip member, stray bytes) is refused, not dropped.
  std::string one = Compress(R"({"a":1})", 16 + MAX_WBITS);
  auto two = DecodeBody(ContentEncoding::kGzip, one + one, 1000);
  EXPECT_EQ(two.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(two.status().message().find("after the end"), std::string::npos);
  EXPECT_EQ(DecodeBody(ContentEncoding::kDeflate, Compress("x", MAX_WBITS) + "junk", 1000)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(DecodeBody(ContentEncoding::kGzip, one, 1000).ok());
}

// The server runs in a child process whose descriptor limit is lowered below the number of
// clients after it starts, so accept() fails with EMFILE: it must pause accepting instead of
// spinning, log a bounded number of lines, and serve a fresh client once the flood leaves.
TEST(ServerFileLimitTest, RunningOutOfDescriptorsPausesAcceptingAndRecovers) {
  TempDir dir;
  std::string log_path = dir.path() + "/server.log";
  int ready[2], quit[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(quit), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(ready[0]);
    ::close(quit[1]);
    spdlog::set_default_logger(spdlog::basic_logger_mt("child", log_path));
    spdlog::flush_on(spdlog::level::info);
    EchoHandler handler;
    ServerOptions o;
    o.port = 0;
    o.io_threads = 1;
    HttpServer server(o, &handler);
    if (!server.Start().ok()) ::_exit(3);
    // About 20 descriptors left for clients.
    int open_fds = 0;
    for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
      (void)e;
      ++open_fds;
    }
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = static_cast<rlim_t>(open_fds + 20);
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) ::_exit(4);
    uint16_t port = server.port();
    if (::write(ready[1], &port, sizeof port) != sizeof port) ::_exit(5);
    char c;
    (void)::read(quit[0], &c, 1);
    server.Stop();
    spdlog::shutdown();
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(quit[0]);
  uint16_t port = 0;
  ASSERT_EQ(::read(ready[0], &port, sizeof port), static_cast<ssize_t>(sizeof port));
  auto cpu_seconds = [pid] {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    long ticks = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14 || i == 15) ticks += std::stol(field);  // utime, stime
    }
    return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  };
  std::vector<int> flood;
  for (int i = 0; i < 200; ++i) {
    int fd = Connect(port);
    if (fd >= 0) flood.push_back(fd);
  }
  // The flood sits for two seconds: a server spinning on accept() would burn about two CPU
  // seconds and log thousands of lines.
  double cpu_before = cpu_seconds();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  double cpu_used = cpu_seconds() - cpu_before;
  for (int fd : flood) ::close(fd);
  // A fresh client is served once the flood has gone.
  std::string r;
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (StatusOf(r) != 200 && Clock::now() < deadline) r = Exchange(port, Post("/a", "fresh"));
  EXPECT_EQ(StatusOf(r), 200) << r;
  ASSERT_EQ(::write(quit[1], "q", 1), 1);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_LT(cpu_used, 0.5);
  std::ifstream log(log_path);
  int accept_lines = 0;
  std::string line;
  while (std::getline(log, line)) accept_lines += line.find("accept failed") != std::string::npos;
  EXPECT_GE(accept_lines, 1);
  EXPECT_LE(accept_lines, 4);
  EXPECT_LT(std::filesystem::file_size(log_path), 4096u);
}

}  // namespace
}  // namespace fairway::http
