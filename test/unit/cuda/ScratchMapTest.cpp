// ScratchMap: where the CUDA executor's per-step scratch lies (runtime/cuda/ScratchMap.h),
// checked without a GPU: layouts are disjoint ranges of virtual offsets, a range in the
// buffer starts at the buffer (steps share it), a range placed in the arena lies at its
// offset there, and a launch that resolves later sees where its range lies then.
#include "runtime/cuda/ScratchMap.h"
#include "common/Error.h"

#include <gtest/gtest.h>

using namespace mantissa;
using namespace mantissa::cuda;

namespace {

TEST(ScratchMap, EachStepsLayoutIsARangeOfItsOwnAndTheBufferIsShared) {
  ScratchMap map;
  char arena[4096], buffer[4096];
  ScratchLayout a = map.open();
  const size_t a0 = a.take(10), a1 = a.take(300); // 256-byte aligned within the layout
  EXPECT_EQ(a1 - a0, 256u);
  EXPECT_EQ(a.size, 256u + 512u);
  EXPECT_EQ(map.close(a, 0, 3), 0);
  ScratchLayout b = map.open();
  EXPECT_EQ(b.begin, a.begin + a.size); // after a: no virtual offset is shared
  const size_t b0 = b.take(64);
  EXPECT_EQ(map.close(b, 0, 7), 1);
  // Both in the buffer: each starts at its start.
  EXPECT_EQ(map.resolve(a0, arena, buffer), buffer);
  EXPECT_EQ(map.resolve(a1, arena, buffer), buffer + 256);
  EXPECT_EQ(map.resolve(b0, arena, buffer), buffer);
  EXPECT_EQ(map.bufferBytes(), 768u);
  // b placed in the arena (as the executor does where the bytes are free at step 7).
  map[1].arenaOffset = 1024;
  EXPECT_EQ(map.resolve(b0, arena, buffer), arena + 1024);
  EXPECT_EQ(map.resolve(b0 + 63, arena, buffer), arena + 1024 + 63);
  EXPECT_EQ(map.resolve(a1 + 511, arena, buffer), buffer + 767);
  EXPECT_EQ(map.bufferBytes(), 768u);
  map[0].arenaOffset = 0;
  EXPECT_EQ(map.bufferBytes(), 0u);
  EXPECT_EQ(map.ranges()[0].step, 3);
  EXPECT_EQ(map.ranges()[1].function, 0);
}

TEST(ScratchMap, EmptyAndAbandonedLayoutsLeaveNoRange) {
  ScratchMap map;
  ScratchLayout empty = map.open();
  EXPECT_EQ(map.close(empty, 0, 0), -1);
  ScratchLayout failed = map.open(); // its step threw while preparing: never closed
  failed.take(1000);
  ScratchLayout next = map.open();
  EXPECT_EQ(next.begin, failed.begin);
  next.take(8);
  EXPECT_EQ(map.close(next, 0, 1), 0);
  EXPECT_EQ(map.ranges().size(), 1u);
}

TEST(ScratchMap, AnOffsetOutsideEveryRangeAndLayoutsClosedOutOfOrderAreErrors) {
  ScratchMap map;
  char arena[256], buffer[256];
  EXPECT_THROW(map.resolve(0, arena, buffer), Error); // no range yet
  ScratchLayout a = map.open(), b = map.open();       // both start at 0
  a.take(16);
  b.take(16);
  map.close(a, 0, 0);
  EXPECT_THROW(map.close(b, 0, 1), Error);              // b overlaps a's range
  EXPECT_THROW(map.resolve(256, arena, buffer), Error); // past the last range
  EXPECT_EQ(map.resolve(255, arena, buffer), buffer + 255); // a's range, in the buffer
}

TEST(ScratchMap, UnchosenWaysCountOnlyWhileEveryWayIsTimed) {
  // MANTISSA_CUDA_CONV=auto: each way to run a convolution has a range, all in the buffer
  // while they are timed; after the choice, only the chosen ones (and the other steps').
  ScratchMap map;
  ScratchLayout step = map.open();
  step.take(100); // 256
  map.close(step, 0, 0);
  for (size_t bytes : {4000, 9000}) {
    ScratchLayout way = map.open();
    way.take(bytes);
    map[size_t(map.close(way, 0, 1))].used = false;
  }
  EXPECT_EQ(map.bufferBytes(/*alsoUnused=*/true), 9216u);
  EXPECT_EQ(map.bufferBytes(), 256u);
  map[1].used = true; // the 4000-byte way was chosen
  EXPECT_EQ(map.bufferBytes(), 4096u);
  map[1].arenaOffset = 0; // and fits in the arena
  EXPECT_EQ(map.bufferBytes(), 256u);
}

} // namespace
