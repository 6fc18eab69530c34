#include "common/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace fairway {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double v) {
  size_t i =
      static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(std::max(0.0, v) * 1e6), std::memory_order_relaxed);
}

double Histogram::sum() const { return sum_micros_.load(std::memory_order_relaxed) / 1e6; }

double Histogram::Quantile(double q) const {
  uint64_t total = count();
  if (total == 0) return 0;
  double rank = q * static_cast<double>(total);
  uint64_t seen = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    uint64_t b = bucket(i);
    if (static_cast<double>(seen + b) >= rank && b > 0) {
      double lo = i == 0 ? 0 : bounds_[i - 1];
      double hi = i < bounds_.size() ? bounds_[i] : bounds_.back();
      double frac = (rank - static_cast<double>(seen)) / static_cast<double>(b);
      return lo + (hi - lo) * std::clamp(frac, 0.0, 1.0);
    }
    seen += b;
  }
  return bounds_.empty() ? 0 : bounds_.back();
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

std::vector<double> SizeBuckets() {
  std::vector<double> b;
  for (double v = 1; v <= 65536; v *= 4) b.push_back(v);
  return b;
}

MetricsRegistry::Family& MetricsRegistry::GetFamily(const std::string& name,
                                                    const std::string& help, Kind kind) {
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.kind = kind;
    it->second.help = help;
  }
  return it->second;
}

Counter* MetricsRegistry::GetCounter(const std::string& name, const std::string& help,
                                     const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = GetFamily(name, help, Kind::kCounter).counters[labels];
  if (!slot) slot = std::make_unique<Counter>();
  return slot.get();
}

Gauge* MetricsRegistry::GetGauge(const std::string& name, const std::string& help,
                                 const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = GetFamily(name, help, Kind::kGauge).gauges[labels];
  if (!slot) slot = std::make_unique<Gauge>();
  return slot.get();
}

Histogram* MetricsRegistry::GetHistogram(const std::string& name, const std::string& help,
                                         std::vector<double> bounds, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = GetFamily(name, help, Kind::kHistogram).histograms[labels];
  if (!slot) slot = std::make_unique<Histogram>(std::move(bounds));
  return slot.get();
}

void MetricsRegistry::SetGaugeFunction(const std::string& name, const std::string& help,
                                       std::function<std::vector<std::pair<Labels, double>>()> fn) {
  std::lock_guard lock(mu_);
  gauge_fns_[name] = {help, std::move(fn)};
}

void MetricsRegistry::RemoveSeriesWithLabel(const std::string& name, const std::string& value) {
  std::lock_guard lock(mu_);
  auto has = [&](const Labels& labels) {
    return std::any_of(labels.begin(), labels.end(),
                       [&](const auto& kv) { return kv.first == name && kv.second == value; });
  };
  // Removed series stop being rendered but stay allocated: a thread that looked one up
  // just before the removal may still update it.
  auto retire = [&](auto& series) {
    for (auto it = series.begin(); it != series.end();) {
      if (has(it->first)) {
        retired_.push_back(std::shared_ptr<void>(std::move(it->second)));
        it = series.erase(it);
      } else {
        ++it;
      }
    }
  };
  for (auto& [_, fam] : families_) {
    retire(fam.counters);
    retire(fam.gauges);
    retire(fam.histograms);
  }
}

namespace {

void AppendLabels(std::string* out, const Labels& labels, const char* extra_name = nullptr,
                  const std::string& extra_value = {}) {
  if (labels.empty() && !extra_name) return;
  out->push_back('{');
  bool first = true;
  auto add = [&](const std::string& k, const std::string& v) {
    if (!first) out->push_back(',');
    first = false;
    out->append(k);
    out->append("=\"");
    for (char c : v) {
      if (c == '\\' || c == '"') out->push_back('\\');
      if (c == '\n') {
        out->append("\\n");
        continue;
      }
      out->push_back(c);
    }
    out->push_back('"');
  };
  for (const auto& [k, v] : labels) add(k, v);
  if (extra_name) add(extra_name, extra_value);
  out->push_back('}');
}

std::string FormatDouble(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

}  // namespace

std::string MetricsRegistry::RenderPrometheus() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, fam] : families_) {
    const char* type = fam.kind == Kind::kCounter ? "counter"
                       : fam.kind == Kind::kGauge ? "gauge"
                                                  : "histogram";
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, fam.help, name, type);
    for (const auto& [labels, c] : fam.counters) {
      out += name;
      AppendLabels(&out, labels);
      out += fmt::format(" {}\n", c->value());
    }
    for (const auto& [labels, g] : fam.gauges) {
      out += name;
      AppendLabels(&out, labels);
      out += fmt::format(" {}\n", g->value());
    }
    for (const auto& [labels, h] : fam.histograms) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i <= h->bounds().size(); ++i) {
        cumulative += h->bucket(i);
        out += name + "_bucket";
        AppendLabels(&out, labels, "le",
                     i < h->bounds().size() ? FormatDouble(h->bounds()[i]) : "+Inf");
        out += fmt::format(" {}\n", cumulative);
      }
      out += name + "_sum";
      AppendLabels(&out, labels);
      out += fmt::format(" {}\n", FormatDouble(h->sum()));
      out += name + "_count";
      AppendLabels(&out, labels);
      out += fmt::format(" {}\n", h->count());
    }
  }
  for (const auto& [name, entry] : gauge_fns_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", name, entry.first, name);
    for (const auto& [labels, v] : entry.second()) {
      out += name;
      AppendLabels(&out, labels);
      out += " " + FormatDouble(v) + "\n";
    }
  }
  return out;
}

}  // namespace fairway
