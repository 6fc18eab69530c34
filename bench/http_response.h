#pragma once
// Minimal HTTP/1.1 response framing for the load generator: status, body (Content-Length,
// chunked, or until close) and whether the server will close the connection.

#include <cstddef>
#include <string>
#include <string_view>

namespace fairway::bench {

// One parsed response. `body` is decoded (chunks joined).
struct HttpResponse {
  int status = 0;
  std::string body;
  bool close = false;
};

// Parses one response from the start of `in`. Returns the number of bytes it used when a whole
// response is there, 0 when more bytes are needed, and -1 when `in` is not HTTP. `eof` says the
// peer closed the connection (ends a body without length).
ptrdiff_t ParseHttpResponse(std::string_view in, bool eof, HttpResponse* out);

}  // namespace fairway::bench
