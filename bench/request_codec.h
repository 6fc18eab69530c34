#pragma once
// Per-protocol request building and answer recognition for the socket-driven targets:
// Fairway's HTTP batch endpoint and Redis (pipelined XADD over RESP).

#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "batch_template.h"
#include "run_plan.h"

namespace fairway::bench {

// The outcome of reading a connection's answer bytes.
struct Reply {
  enum class State { kIncomplete, kOk, kFailed, kBroken };
  State state = State::kIncomplete;
  bool close = false;  // the server will close the connection after this answer
  std::string error;   // for kFailed and kBroken
};

// What a connection sends and how it knows the whole answer arrived. One instance per
// connection: it owns the connection's pre-built request template.
class RequestCodec {
 public:
  virtual ~RequestCodec() = default;

  // Builds the next request for tenant index `tenant`; the buffers stay valid until the next
  // call.
  virtual std::span<const iovec> Prepare(size_t tenant, std::string_view timestamp) = 0;
  // Consumes answer bytes from the front of `in`; `eof` when the peer closed the connection.
  virtual Reply Consume(std::string* in, bool eof) = 0;
  // Forgets any partly read answer (new connection).
  virtual void Reset() {}
};

// Segment-style `POST /v1/batch` with a JSON body of `batch` track events. The answer must be
// 200 with {"success":true}.
class HttpBatchCodec final : public RequestCodec {
 public:
  HttpBatchCodec(const Workload& workload, uint16_t stream, uint64_t seed);

  std::span<const iovec> Prepare(size_t tenant, std::string_view timestamp) override;
  Reply Consume(std::string* in, bool eof) override;

 private:
  const Workload& workload_;
  BatchTemplate body_;
  std::string length_header_;  // "Content-Length: N\r\n\r\n"
  FieldSource source_;
  std::array<iovec, 3> iov_{};
};

// `batch` pipelined `XADD fairway:<tenant> * data <event json>` commands; done when as many
// replies were read. Any error reply fails the request.
class RespPipelineCodec final : public RequestCodec {
 public:
  RespPipelineCodec(const Workload& workload, uint16_t stream, uint64_t seed);

  std::span<const iovec> Prepare(size_t tenant, std::string_view timestamp) override;
  Reply Consume(std::string* in, bool eof) override;
  void Reset() override;

 private:
  const Workload& workload_;
  BatchTemplate commands_;
  FieldSource source_;
  std::array<iovec, 1> iov_{};
  uint32_t replies_ = 0;
  uint32_t error_replies_ = 0;
  std::string first_error_;
};

// Parses one RESP value from the front of `in`. Returns bytes used, 0 when incomplete, -1 when
// malformed. Sets *is_error (and *error) for an error reply, including one nested in an array.
ptrdiff_t ParseRespValue(std::string_view in, bool* is_error, std::string* error);

}  // namespace fairway::bench
