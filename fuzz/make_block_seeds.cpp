// Writes the block_fuzzer's seed corpus: log blocks as the embedded log stores them, built by
// the real block encoder from activities the real Segment parser accepted (one record, a group
// commit of many, LZ4-compressed and not, and an empty block).
//
// Usage: make_block_seeds <output directory>

#include <cstdio>
#include <fstream>
#include <string>

#include "log/block.h"
#include "model/activity.h"
#include "model/segment_parser.h"

namespace {

constexpr int64_t kReceivedAtMs = 1'709'632'800'000;

std::string Records(const std::string& batch_body, fairway::log::BlockBuilder* b) {
  auto parsed = fairway::model::ParseSegmentRequest(batch_body, std::nullopt, kReceivedAtMs,
                                                    fairway::model::SegmentLimits{});
  if (!parsed.ok() || !parsed->errors.empty()) return "the seed batch does not parse";
  for (const auto& a : parsed->activities) {
    std::string record;
    fairway::model::EncodeActivity(a, &record);
    b->Add(record, a.received_at_ms);
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_block_seeds <output directory>\n");
    return 2;
  }
  const std::string dir = argv[1];
  const std::string one =
      R"({"batch":[{"type":"track","userId":"user-42","event":"Viewed Pricing",)"
      R"("properties":{"plan":"pro","price":49.5},"context":{"library":{"name":"analytics.js"}},)"
      R"("messageId":"ajs-1","timestamp":"2024-03-05T10:00:00.123Z"}]})";
  std::string many = R"({"batch":[)";
  for (int i = 0; i < 100; ++i) {
    if (i) many += ",";
    many += R"({"type":")" +
            std::string(i % 3 == 0 ? "page" : (i % 3 == 1 ? "track" : "identify")) +
            R"(","anonymousId":"anon-)" + std::to_string(i % 7) + R"(","userId":"u)" +
            std::to_string(i % 5) + R"(","event":"Clicked","name":"Home","messageId":"m)" +
            std::to_string(i) + R"(","properties":{"url":"https://www.example.com/p/)" +
            std::to_string(i) + R"("},"traits":{"email":"u)" + std::to_string(i % 5) +
            R"(@example.com"},"sentAt":"2024-03-05T10:00:01Z"})";
  }
  many += "]}";
  struct Seed {
    const char* name;
    const std::string* body;
    size_t compress_min;
  };
  const Seed seeds[] = {{"one-plain", &one, SIZE_MAX},
                        {"one-lz4", &one, 0},
                        {"many-plain", &many, SIZE_MAX},
                        {"many-lz4", &many, 0},
                        {"empty", nullptr, SIZE_MAX}};
  for (const Seed& s : seeds) {
    fairway::log::BlockBuilder b;
    if (s.body) {
      if (std::string err = Records(*s.body, &b); !err.empty()) {
        fprintf(stderr, "%s: %s\n", s.name, err.c_str());
        return 1;
      }
    }
    std::ofstream(dir + "/" + s.name, std::ios::binary) << b.Finish(s.compress_min);
  }
  return 0;
}
