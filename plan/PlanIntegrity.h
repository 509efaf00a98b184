//===- PlanIntegrity.h - is this file a whole, undamaged plan of our version? --===//
//
// The one check of a plan's bytes, shared by the runtime (PlanLoader) and `inspect`:
// the file identifier, FlatBuffers verification (every offset inside the file), the
// format version, and the checksum (Plan.checksum, version 8).
//
// Verification alone lets a damaged byte through when it lands in a value rather
// than an offset (a learning rate, a shape, an initialiser, a CUBIN), and such a plan
// would train silently wrong. The checksum is FNV-1a 64 over the whole file with its
// own 8 bytes read as zero, so every single damaged byte is found (Hash.h), and any
// other damage with probability 1 - 2^-64. It detects accidents (a truncated copy, a
// flipped bit on a disk or in transit); it does not authenticate who wrote the plan.
//
// A writer builds the Plan with checksum = kChecksumPlaceholder (so that the field
// is stored) and calls sealPlan on the finished buffer.
//===----------------------------------------------------------------------===//
#pragma once

#include "common/Hash.h"
#include "plan/PlanVersion.h"
#include "plan/mantissa_plan_generated.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace mantissa::plan {

/// What a writer stores in Plan.checksum before sealPlan replaces it (any value but
/// the default 0 makes FlatBuffers store the field).
inline constexpr uint64_t kChecksumPlaceholder = 1;

/// Where Plan.checksum's 8 bytes lie in a verified plan buffer; nullptr if it has none.
inline const uint8_t *checksumField(const uint8_t *data) {
  return flatbuffers::GetRoot<flatbuffers::Table>(data)->GetAddressOf(Plan::VT_CHECKSUM);
}

/// The checksum of `size` bytes whose Plan.checksum field lies at `field`.
inline uint64_t planChecksum(const uint8_t *data, size_t size, const uint8_t *field) {
  static const uint8_t zeros[sizeof(uint64_t)] = {};
  size_t at = size_t(field - data);
  uint64_t h = fnv1a64(data, at);
  h = fnv1a64(zeros, sizeof zeros, h);
  return fnv1a64(field + sizeof zeros, size - at - sizeof zeros, h);
}

/// Writes the checksum into a finished plan buffer built with kChecksumPlaceholder.
inline void sealPlan(uint8_t *data, size_t size) {
  const uint8_t *field = checksumField(data);
  if (!field)
    throw std::logic_error("sealPlan: the plan was built without a checksum field "
                           "(set checksum = kChecksumPlaceholder)");
  uint64_t sum = planChecksum(data, size, field);
  flatbuffers::WriteScalar(const_cast<uint8_t *>(field), sum);
}

/// The finished buffer of `b`, sealed.
inline std::vector<uint8_t> sealedBytes(const flatbuffers::FlatBufferBuilder &b) {
  std::vector<uint8_t> bytes(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
  sealPlan(bytes.data(), bytes.size());
  return bytes;
}

/// "" when `data` is a whole plan of this runtime's version whose checksum holds;
/// else what is wrong, in words (the caller prefixes the file's name).
inline std::string checkPlanBytes(const uint8_t *data, size_t size) {
  if (size < 8)
    return "not a Mantissa plan (" + std::to_string(size) + " bytes: empty or truncated)";
  if (!flatbuffers::BufferHasIdentifier(data, PlanIdentifier()))
    return "not a Mantissa plan (file identifier is not \"MNTP\")";
  flatbuffers::Verifier verifier(data, size, /*max_depth=*/64, /*max_tables=*/100000000);
  if (!VerifyPlanBuffer(verifier))
    return "corrupt plan (" + std::to_string(size) +
           " bytes fail FlatBuffers verification: truncated or damaged file)";
  const Plan *p = GetPlan(data);
  const uint8_t *field = checksumField(data);
  const uint64_t sum = field ? planChecksum(data, size, field) : 0;
  const bool holds = field && sum == p->checksum();
  if (p->version() != kPlanVersion)
    return "plan version " + std::to_string(p->version()) + ", but this runtime reads version " +
           std::to_string(kPlanVersion) + " (recompile the model)" +
           (field && !holds ? "; its checksum does not hold either: the file may be damaged" : "");
  if (!field)
    return "corrupt plan (no checksum: every version " + std::to_string(kPlanVersion) +
           " plan has one; damaged file, or not written by `mantissa compile`)";
  if (!holds)
    return "corrupt plan (its " + std::to_string(size) + " bytes hash to " + hex16(sum) +
           ", but it records checksum " + hex16(p->checksum()) +
           ": damaged or modified after compiling; copy or compile it again)";
  return "";
}

} // namespace mantissa::plan
