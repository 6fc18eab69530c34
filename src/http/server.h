#pragma once
// HttpServer: an HTTP/1.1 server on Boost.Beast with keep-alive, request size limits and
// timeouts against slow clients. Owns its I/O threads; hands each request to a Handler.
// A Responder keeps its connection alive: whoever holds Responders (queues, worker threads)
// must release them before the server is destroyed.
//
// Limits that keep one client from stalling the server: a bound on open connections (past it
// a connection gets a fast 503 and is closed), a pause in accepting when file descriptors run
// out (logged at most once per 10 s), a deadline for each request's header and body (408), and
// a global budget of buffered request bytes (503 before the body is read). Every 503 and 429
// carries Retry-After. Bodies sent with Content-Encoding gzip or deflate are inflated (within
// the body limit); other encodings get 415. With a certificate and key, connections are TLS
// (Beast over OpenSSL; TLS 1.2 and later).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "http/handler.h"

namespace fairway::http {

struct ServerOptions {
  // Address to listen on; port 0 picks a free port (see HttpServer::port()).
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  // Threads running the I/O event loop.
  int io_threads = 2;
  // Largest request body accepted (after decoding); larger ones get 413 and the connection is
  // closed.
  size_t max_body_bytes = 500 * 1024;
  // From the first byte of a request, its header and body must arrive within this many
  // seconds; otherwise the client gets 408 and the connection is closed (slow-client and
  // short-body protection).
  int read_timeout_seconds = 30;
  // An idle keep-alive connection is closed after this many seconds.
  int idle_timeout_seconds = 60;
  // Most client connections open at once. Start() lowers it to leave file descriptors for the
  // store under RLIMIT_NOFILE (whose soft limit it raises to the hard one). A connection past
  // it is answered 503 with Retry-After and closed.
  int max_connections = 10'000;
  // Request bytes all connections together may hold in memory, from a request's header until
  // its answer is written. A request whose Content-Length would exceed it gets 503 with
  // Retry-After before its body is read. A request is always admitted when nothing else is
  // buffered, so this never refuses everything.
  size_t max_buffered_bytes = size_t{256} << 20;
  // TLS: a PEM certificate chain and its private key. Both empty: plain HTTP (a warning is
  // logged when the address is not loopback).
  std::string tls_cert_file;
  std::string tls_key_file;
  // How long accepting pauses when accept() fails for lack of file descriptors or memory.
  int accept_backoff_ms = 100;
  // Whether the client's address is the first of X-Forwarded-For (set by a proxy in front)
  // rather than the connection's peer.
  bool trust_forwarded_for = false;
};

class HttpServer {
 public:
  // `handler` must outlive the server.
  HttpServer(ServerOptions options, Handler* handler);
  ~HttpServer();

  // Validates the options, binds, listens and starts the I/O threads. InvalidArgument names
  // an option out of range.
  Status Start();
  // The bound port (after Start).
  uint16_t port() const;
  // The connection limit in force (after Start): max_connections capped by RLIMIT_NOFILE.
  int max_connections() const;
  // Connections open now, and request bytes buffered now (for tests and metrics).
  int open_connections() const;
  size_t buffered_bytes() const;
  // Stops accepting, closes connections and joins the I/O threads.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairway::http
