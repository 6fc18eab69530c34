#pragma once
// A minimal append-only JSON writer for hot paths (ingest answers, activity read-back), where a
// DOM library would cost more than the work itself. Callers produce well-formed structure; the
// writer handles escaping and commas.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fairway {

// Appends `s` to `out` as a JSON string literal, quotes included. Bytes that are not valid
// UTF-8 are written as U+FFFD, so the result is always valid JSON.
void AppendJsonString(std::string* out, std::string_view s);

class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view k);
  JsonWriter& String(std::string_view v);
  JsonWriter& Int(int64_t v);
  JsonWriter& Uint(uint64_t v);
  JsonWriter& Double(double v);
  JsonWriter& Bool(bool v);
  JsonWriter& Null();
  // Appends already-serialized JSON as one value.
  JsonWriter& Raw(std::string_view json);

  const std::string& str() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void Separate();
  std::string out_;
  std::vector<bool> first_;  // one entry per open container: no element written yet
  bool after_key_ = false;
};

}  // namespace fairway
