// Fuzzes the campaign definition parser (campaigns/campaign.h): any input must be either a
// compiled campaign or an InvalidArgument naming a field, never a crash, a hang or undefined
// behaviour. Also runs FieldValue::FromJson, which reads stored trait values.
//
// Input: the JSON body of POST /v1/campaigns.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "campaigns/campaign.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto campaign = fairway::campaigns::ParseCampaign(input, "c1");
  if (!campaign.ok() && campaign.status().code() != fairway::StatusCode::kInvalidArgument) {
    fprintf(stderr, "campaign_fuzzer: unexpected error %s\n", campaign.status().ToString().c_str());
    std::abort();
  }
  auto value = fairway::campaigns::FieldValue::FromJson(input);
  (void)value.Lowered();
  return 0;
}
