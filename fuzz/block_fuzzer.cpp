// Fuzzes the embedded log's block decoder (log/block.h) and the activity record decoder behind
// it: a corrupt block must be an error, never a crash or an over-read. A block that decodes is
// rebuilt and must decode to the same records.
//
// Input: one stored block value, as the embedded log writes it.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "log/block.h"
#include "model/activity.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "block_fuzzer: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A copy of exactly `size` bytes, so ASan sees any read past the block's end.
  std::string block(reinterpret_cast<const char*>(data), size);
  auto header = fairway::log::ReadBlockHeader(block);
  std::string scratch;
  std::vector<std::string_view> records;
  fairway::Status st = fairway::log::DecodeBlock(block, &scratch, &records);
  if (!st.ok()) return 0;
  Check(header.ok(), "a block decodes but its header does not");
  Check(header->count == records.size(), "the header's count differs from the records decoded");
  for (std::string_view r : records) (void)fairway::model::DecodeActivity(r);

  fairway::log::BlockBuilder builder;
  for (std::string_view r : records) builder.Add(r, header->max_received_at_ms);
  for (size_t compress_min : {size_t{0}, size_t{1} << 30}) {
    std::string rebuilt = fairway::log::BlockBuilder(builder).Finish(compress_min);
    std::string scratch2;
    std::vector<std::string_view> again;
    Check(fairway::log::DecodeBlock(rebuilt, &scratch2, &again).ok(),
          "a rebuilt block does not decode");
    Check(again == records, "a rebuilt block decodes to other records");
  }
  return 0;
}
