#pragma once
// What the store puts between RocksDB and the disk (internal to the storage module; included
// by store.cpp only): the file system wrapper (DiskFullProbe, no preallocation of table files,
// room kept ahead of the write-ahead log), RocksDB's diagnostic log on stderr, the listener that
// leaves error recovery to the store, and the disk reserve file.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "storage/store.h"

namespace rocksdb {
class Env;
class EventListener;
class Logger;
}  // namespace rocksdb

namespace fairway::storage {

// Bytes kept allocated beyond the end of the write-ahead log.
inline constexpr uint64_t kWalLookAhead = 4u << 20;

// The Env of a store: RocksDB's default file system, wrapped. `probe` may be null. The
// write-ahead log's files set `*wal_space_low` when kWalLookAhead bytes beyond their end cannot
// be allocated. Both must outlive the Env.
std::unique_ptr<rocksdb::Env> NewStoreEnv(const DiskFullProbe* probe,
                                          std::atomic<bool>* wal_space_low);

// RocksDB's diagnostic log: warnings and errors on stderr, not a LOG file on the data disk.
std::shared_ptr<rocksdb::Logger> NewStderrRocksLogger();

// Turns off RocksDB's automatic recovery from background errors.
std::shared_ptr<rocksdb::EventListener> NewManualRecoveryListener();

// The reserve file (StoreOptions::reserve_bytes) of the store directory `dir`.
std::string ReservePath(const std::string& dir);

// Creates the reserve file of `bytes` (0600) in `dir`, preallocated so that the space is really
// held; OK at once when it is already there. Unavailable (naming the cause) when the space is
// not there; no partial file is left behind.
Status CreateReserve(const std::string& dir, uint64_t bytes, const DiskFullProbe* probe);

}  // namespace fairway::storage
