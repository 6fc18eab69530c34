#include "request_codec.h"

#include <charconv>

#include "http_response.h"

namespace fairway::bench {
namespace {

constexpr size_t kMaxRespDepth = 8;

iovec Iov(std::string_view s) { return iovec{const_cast<char*>(s.data()), s.size()}; }

ptrdiff_t ParseRespAt(std::string_view in, size_t depth, bool* is_error, std::string* error) {
  if (depth > kMaxRespDepth) return -1;
  size_t line_end = in.find("\r\n");
  if (line_end == std::string_view::npos) return 0;
  if (line_end == 0) return -1;
  std::string_view line = in.substr(1, line_end - 1);
  auto head = static_cast<ptrdiff_t>(line_end + 2);
  auto parse_int = [&line](int64_t* v) {
    auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), *v);
    return ec == std::errc() && ptr == line.data() + line.size();
  };
  switch (in[0]) {
    case '+':
    case ':':
      return head;
    case '-':
      if (!*is_error) error->assign(line);
      *is_error = true;
      return head;
    case '$': {
      int64_t length = 0;
      if (!parse_int(&length)) return -1;
      if (length < 0) return head;
      auto total = head + static_cast<ptrdiff_t>(length) + 2;
      if (static_cast<ptrdiff_t>(in.size()) < total) return 0;
      if (in.substr(static_cast<size_t>(total - 2), 2) != "\r\n") return -1;
      return total;
    }
    case '*': {
      int64_t count = 0;
      if (!parse_int(&count)) return -1;
      ptrdiff_t pos = head;
      for (int64_t i = 0; i < count; ++i) {
        ptrdiff_t used =
            ParseRespAt(in.substr(static_cast<size_t>(pos)), depth + 1, is_error, error);
        if (used <= 0) return used;
        pos += used;
      }
      return pos;
    }
    default:
      return -1;
  }
}

}  // namespace

ptrdiff_t ParseRespValue(std::string_view in, bool* is_error, std::string* error) {
  return ParseRespAt(in, 0, is_error, error);
}

HttpBatchCodec::HttpBatchCodec(const Workload& workload, uint16_t stream, uint64_t seed)
    : workload_(workload), body_(0), source_(workload.run_id, stream, workload.users, seed) {
  body_.Append(R"({"batch":[)");
  for (uint32_t i = 0; i < workload.batch; ++i) {
    if (i > 0) body_.Append(",");
    EventShape(EventVariant(stream, i)).AppendTo(&body_, i);
  }
  body_.Append("]}");
  length_header_ = "Content-Length: " + std::to_string(body_.bytes().size()) + "\r\n\r\n";
}

std::span<const iovec> HttpBatchCodec::Prepare(size_t tenant, std::string_view timestamp) {
  body_.Fill({}, timestamp, source_);
  iov_[0] = Iov(workload_.http_heads[tenant]);
  iov_[1] = Iov(length_header_);
  iov_[2] = Iov(body_.bytes());
  return iov_;
}

Reply HttpBatchCodec::Consume(std::string* in, bool eof) {
  Reply reply;
  HttpResponse response;
  ptrdiff_t used = ParseHttpResponse(*in, eof, &response);
  if (used < 0) {
    reply.state = Reply::State::kBroken;
    reply.error = "malformed HTTP answer: " + in->substr(0, 200);
    return reply;
  }
  if (used == 0) {
    if (eof) {
      reply.state = Reply::State::kBroken;
      reply.error = "connection closed before a full answer";
    }
    return reply;
  }
  in->erase(0, static_cast<size_t>(used));
  reply.close = response.close;
  bool ok = response.status == 200 && response.body.find(R"("success":true)") != std::string::npos;
  reply.state = ok ? Reply::State::kOk : Reply::State::kFailed;
  if (!ok)
    reply.error = "HTTP " + std::to_string(response.status) + ": " + response.body.substr(0, 300);
  return reply;
}

RespPipelineCodec::RespPipelineCodec(const Workload& workload, uint16_t stream, uint64_t seed)
    : workload_(workload),
      commands_(workload.tenant_names.empty() ? 0 : workload.tenant_names[0].size()),
      source_(workload.run_id, stream, workload.users, seed) {
  std::string key_length = std::to_string(8 + commands_.tenant_width());  // "fairway:" + tenant
  for (uint32_t i = 0; i < workload.batch; ++i) {
    EventShape event(EventVariant(stream, i));
    commands_.Append("*5\r\n$4\r\nXADD\r\n$" + key_length + "\r\nfairway:");
    commands_.AppendSlot(Field::kTenant, i);
    commands_.Append("\r\n$1\r\n*\r\n$4\r\ndata\r\n$" + std::to_string(event.json_size()) + "\r\n");
    event.AppendTo(&commands_, i);
    commands_.Append("\r\n");
  }
}

std::span<const iovec> RespPipelineCodec::Prepare(size_t tenant, std::string_view timestamp) {
  commands_.Fill(workload_.tenant_names[tenant], timestamp, source_);
  iov_[0] = Iov(commands_.bytes());
  return iov_;
}

Reply RespPipelineCodec::Consume(std::string* in, bool eof) {
  Reply reply;
  std::string_view view = *in;
  size_t pos = 0;
  while (replies_ < workload_.batch) {
    bool is_error = false;
    std::string error;
    ptrdiff_t used = ParseRespValue(view.substr(pos), &is_error, &error);
    if (used < 0) {
      reply.state = Reply::State::kBroken;
      reply.error = "malformed RESP reply: " + std::string(view.substr(pos, 200));
      return reply;
    }
    if (used == 0) break;
    pos += static_cast<size_t>(used);
    ++replies_;
    if (is_error) {
      if (error_replies_++ == 0) first_error_ = std::move(error);
    }
  }
  in->erase(0, pos);
  if (replies_ < workload_.batch) {
    if (eof) {
      reply.state = Reply::State::kBroken;
      reply.error = "connection closed before all replies";
    }
    return reply;
  }
  reply.state = error_replies_ == 0 ? Reply::State::kOk : Reply::State::kFailed;
  if (error_replies_ > 0) {
    reply.error = std::to_string(error_replies_) + " error replies, first: " + first_error_;
  }
  Reset();
  return reply;
}

void RespPipelineCodec::Reset() {
  replies_ = 0;
  error_replies_ = 0;
  first_error_.clear();
}

}  // namespace fairway::bench
