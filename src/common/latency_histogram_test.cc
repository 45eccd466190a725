#include "common/latency_histogram.h"

#include <gtest/gtest.h>

namespace latchkey {
namespace {

using std::chrono::microseconds;

TEST(LatencyHistogramTest, BucketsAreCumulativeAndBoundsInclusive) {
  LatencyHistogram h;
  h.Record(microseconds(100));         // le 0.0001 (bounds are inclusive)
  h.Record(microseconds(101));         // le 0.00025
  h.Record(microseconds(2'000));       // le 0.0025
  h.Record(std::chrono::seconds(10));  // only +Inf
  EXPECT_EQ(h.count(), 4u);
  EXPECT_EQ(h.CumulativeCount(0), 1u);
  EXPECT_EQ(h.CumulativeCount(1), 2u);
  EXPECT_EQ(h.CumulativeCount(3), 2u);  // le 0.001
  EXPECT_EQ(h.CumulativeCount(4), 3u);  // le 0.0025
  EXPECT_EQ(h.CumulativeCount(LatencyHistogram::kUpperBoundsUs.size() - 1), 3u);
  EXPECT_EQ(h.CumulativeCount(LatencyHistogram::kUpperBoundsUs.size()), 4u);
  EXPECT_NEAR(h.sum_seconds(), 10.002201, 1e-9);
}

TEST(LatencyHistogramTest, RendersPrometheusText) {
  LatencyHistogram h;
  h.Record(microseconds(300));
  h.Record(microseconds(-5));  // a clock step backwards counts as zero
  std::string out;
  h.AppendPrometheus(&out, "x_seconds", "What x takes.");
  EXPECT_EQ(out.rfind("# HELP x_seconds What x takes.\n# TYPE x_seconds histogram\n", 0), 0u);
  EXPECT_NE(out.find("x_seconds_bucket{le=\"0.0001\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{le=\"0.00025\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{le=\"0.0005\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{le=\"2.5\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_sum 0.000300\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_count 2\n"), std::string::npos) << out;
}

}  // namespace
}  // namespace latchkey
