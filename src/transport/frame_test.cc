#include "transport/frame.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace latchkey::transport {
namespace {

std::vector<std::string> DrainAll(FrameDecoder* d) {
  std::vector<std::string> out;
  for (;;) {
    std::string_view p;
    Result<bool> r = d->Next(&p);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok() || !*r) break;
    out.emplace_back(p);
  }
  return out;
}

TEST(FrameTest, HeaderIsBigEndianLength) {
  const std::string f = EncodeFrame(std::string(258, 'x'));
  ASSERT_EQ(f.size(), 4u + 258u);
  EXPECT_EQ(f[0], '\0');
  EXPECT_EQ(f[1], '\0');
  EXPECT_EQ(f[2], '\x01');
  EXPECT_EQ(f[3], '\x02');
  std::string appended = "pre";
  AppendFrame("ab", &appended);
  EXPECT_EQ(appended, std::string("pre\0\0\0\x02"
                                  "ab",
                                  9));
}

TEST(FrameTest, RoundTrip) {
  FrameDecoder d;
  const std::string f = EncodeFrame("hello");
  d.Feed(f.data(), f.size());
  std::string_view p;
  Result<bool> r = d.Next(&p);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(*r);
  EXPECT_EQ(p, "hello");
  r = d.Next(&p);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  EXPECT_EQ(d.buffered_bytes(), 0u);
}

TEST(FrameTest, ZeroLengthFrame) {
  const std::string f = EncodeFrame("");
  ASSERT_EQ(f, std::string(4, '\0'));
  FrameDecoder d;
  d.Feed(f.data(), f.size());
  d.Feed(f.data(), f.size());
  std::string_view p = "untouched";
  Result<bool> r = d.Next(&p);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(*r);
  EXPECT_TRUE(p.empty());
  EXPECT_EQ(DrainAll(&d), std::vector<std::string>{""});
}

TEST(FrameTest, ByteByByte) {
  const std::vector<std::string> want = {"a", "", std::string(300, 'z'), "tail", ""};
  std::string stream;
  for (const auto& w : want) AppendFrame(w, &stream);
  FrameDecoder d;
  std::vector<std::string> got;
  for (char c : stream) {
    d.Feed(&c, 1);
    for (auto& s : DrainAll(&d)) got.push_back(std::move(s));
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(d.buffered_bytes(), 0u);
}

TEST(FrameTest, ManyFramesInOneFeed) {
  std::vector<std::string> want;
  std::string stream;
  for (int i = 0; i < 5000; ++i) {
    want.push_back(std::string(static_cast<size_t>(i % 97), static_cast<char>('a' + i % 26)));
    AppendFrame(want.back(), &stream);
  }
  FrameDecoder d;
  d.Feed(stream.data(), stream.size());
  EXPECT_EQ(DrainAll(&d), want);
}

TEST(FrameTest, PartialHeaderNeedsMoreBytes) {
  FrameDecoder d;
  const std::string f = EncodeFrame("xyz");
  d.Feed(f.data(), 3);
  std::string_view p = "untouched";
  Result<bool> r = d.Next(&p);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  EXPECT_EQ(p, "untouched");
  d.Feed(f.data() + 3, f.size() - 3);
  EXPECT_EQ(DrainAll(&d), std::vector<std::string>{"xyz"});
}

TEST(FrameTest, ExactlyMaxIsAccepted) {
  FrameDecoder d(16);
  const std::string f = EncodeFrame(std::string(16, 'm'));
  d.Feed(f.data(), f.size());
  EXPECT_EQ(DrainAll(&d), std::vector<std::string>{std::string(16, 'm')});
}

TEST(FrameTest, OversizeHeaderFailsAndStaysFailed) {
  FrameDecoder d(16);
  const std::string ok = EncodeFrame("fine");
  const std::string big = EncodeFrame(std::string(17, 'b'));
  d.Feed(ok.data(), ok.size());
  d.Feed(big.data(), 4);  // the header alone is enough to fail
  std::string_view p;
  Result<bool> r = d.Next(&p);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(p, "fine");
  r = d.Next(&p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFrameTooLarge);
  EXPECT_NE(r.status().message().find("17"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("16"), std::string::npos) << r.status().message();
  EXPECT_TRUE(d.failed());
  // Stays failed, and input is no longer buffered.
  d.Feed(ok.data(), ok.size());
  EXPECT_EQ(d.buffered_bytes(), 0u);
  r = d.Next(&p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFrameTooLarge);
}

TEST(FrameTest, HugeAnnouncedLengthFailsWithoutAllocating) {
  FrameDecoder d;  // 4 MiB default
  const char header[4] = {'\xff', '\xff', '\xff', '\xff'};
  d.Feed(header, 4);
  std::string_view p;
  Result<bool> r = d.Next(&p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFrameTooLarge);
  EXPECT_NE(r.status().message().find("4294967295"), std::string::npos);
  EXPECT_NE(r.status().message().find(std::to_string(kDefaultMaxFrameBytes)), std::string::npos);
}

TEST(FrameTest, BufferStaysBoundedWhileStreaming) {
  // 200k frames fed in odd-sized chunks, drained after every feed: the
  // unconsumed tail never exceeds one frame plus one chunk.
  std::string stream;
  for (int i = 0; i < 200000; ++i)
    AppendFrame(std::string(static_cast<size_t>(i % 50), 'q'), &stream);
  FrameDecoder d;
  size_t frames = 0;
  for (size_t off = 0; off < stream.size(); off += 61) {
    const size_t n = std::min<size_t>(61, stream.size() - off);
    d.Feed(stream.data() + off, n);
    std::string_view p;
    for (;;) {
      Result<bool> r = d.Next(&p);
      ASSERT_TRUE(r.ok());
      if (!*r) break;
      ++frames;
    }
    ASSERT_LE(d.buffered_bytes(), 4u + 50u + 61u);
  }
  EXPECT_EQ(frames, 200000u);
}

TEST(FrameTest, RandomBytesNeverCrash) {
  std::mt19937 rng(12345);
  for (int iter = 0; iter < 2000; ++iter) {
    const uint32_t max = 1 + rng() % 2048;
    FrameDecoder d(max);
    const size_t len = rng() % 4096;
    std::string bytes(len, '\0');
    for (auto& c : bytes) {
      // Bias towards small big-endian lengths so many frames parse.
      c = static_cast<char>(rng() % 4 == 0 ? rng() % 256 : rng() % 8);
    }
    size_t off = 0;
    bool failed = false;
    while (off < bytes.size()) {
      const size_t n = std::min<size_t>(1 + rng() % 300, bytes.size() - off);
      d.Feed(bytes.data() + off, n);
      off += n;
      std::string_view p;
      for (;;) {
        Result<bool> r = d.Next(&p);
        if (!r.ok()) {
          ASSERT_EQ(r.status().code(), Code::kFrameTooLarge);
          failed = true;
          break;
        }
        ASSERT_FALSE(failed);
        if (!*r) break;
        ASSERT_LE(p.size(), max);
      }
      ASSERT_LE(d.buffered_bytes(), size_t{max} + 4 + 300);
    }
  }
}

}  // namespace
}  // namespace latchkey::transport
