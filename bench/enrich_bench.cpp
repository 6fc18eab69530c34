// Micro benchmarks of the enrichment of browsers' events (docs/web.md): what it adds to each
// event's ingest, with the User-Agent cached (web traffic repeats a few thousand of them) and not.

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "enrich/enricher.h"

namespace {

using namespace fairway;

const enrich::UserAgentParser& Parser() {
  static auto p = enrich::UserAgentParser::Load(enrich::kDefaultRegexesPath);
  if (!p.ok()) std::abort();
  return **p;
}
const enrich::CountryLookup& Countries() {
  static auto c =
      enrich::CountryLookup::Open(enrich::kDefaultGeoIpPath, enrich::kDefaultGeoIpV6Path);
  if (!c.ok()) std::abort();
  return **c;
}

constexpr char kChrome[] =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.109 Safari/537.36";

// A page view as analytics.js sends it.
model::Activity PageView() {
  model::Activity a;
  a.type = model::ActivityType::kPage;
  a.fields_json =
      R"("properties":{"title":"Pricing","path":"/pricing"},"context":{"page":{"path":"/pricing","referrer":"https://www.google.com/","search":"?utm_source=news","title":"Pricing","url":"https://shop.example.com/pricing?utm_source=news"},"userAgent":")" +
      std::string(kChrome) +
      R"(","locale":"en-US","library":{"name":"analytics.js","version":"next-1.84.3"},"campaign":{}})";
  return a;
}

void BM_EnrichPageViewCachedUserAgent(benchmark::State& state) {
  enrich::Enricher e(&Parser(), &Countries());
  const model::Activity base = PageView();
  for (auto _ : state) {
    model::Activity a = base;
    e.Enrich(&a, {.ip = "8.8.8.8", .user_agent = kChrome, .browser = true}, {});
    benchmark::DoNotOptimize(a.fields_json.data());
  }
}
BENCHMARK(BM_EnrichPageViewCachedUserAgent);

void BM_ParseUserAgentUncached(benchmark::State& state) {
  uint64_t n = 0;
  for (auto _ : state) {
    // A User-Agent never seen before: every pattern list is matched.
    auto p = Parser().Parse(fmt::format("{} Build/{}", kChrome, n++));
    benchmark::DoNotOptimize(p.browser.data());
  }
}
BENCHMARK(BM_ParseUserAgentUncached);

void BM_CountryLookup(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(Countries().Find("8.8.8.8"));
}
BENCHMARK(BM_CountryLookup);

void BM_ServerEventCheckOnly(benchmark::State& state) {
  model::Activity a;
  a.fields_json = R"("event":"Signed Up","properties":{"plan":"pro","seats":3})";
  for (auto _ : state) benchmark::DoNotOptimize(enrich::Enricher::HasVisitorContext(a));
}
BENCHMARK(BM_ServerEventCheckOnly);

}  // namespace

BENCHMARK_MAIN();
