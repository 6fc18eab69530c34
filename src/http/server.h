#pragma once
// HttpServer: an HTTP/1.1 server on Boost.Beast with keep-alive, request size limits and
// timeouts against slow clients. Owns its I/O threads; hands each request to a Handler.
// A Responder keeps its connection alive: whoever holds Responders (queues, worker threads)
// must release them before the server is destroyed.

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
  // Largest request body accepted; larger ones get 413 and the connection is closed.
  size_t max_body_bytes = 500 * 1024;
  // A request must arrive in full within this many seconds (slow-client protection).
  int read_timeout_seconds = 30;
  // An idle keep-alive connection is closed after this many seconds.
  int idle_timeout_seconds = 60;
};

class HttpServer {
 public:
  // `handler` must outlive the server.
  HttpServer(ServerOptions options, Handler* handler);
  ~HttpServer();

  // Binds, listens and starts the I/O threads.
  Status Start();
  // The bound port (after Start).
  uint16_t port() const;
  // Stops accepting, closes connections and joins the I/O threads.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairway::http
