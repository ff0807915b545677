// Package store is the appliance's log cache on disk: a bounded ring of segment files
// holding newline-delimited JSON records, usable on its own (the logcache plugin is a thin
// gRPC layer on top of it).
//
// # Files
//
// A store owns one directory (default /var/log/sitelink/cache). Segments are named after
// the lowest sequence number they may hold, zero-padded so that names sort in write order:
//
//	00000000000000000001.ndjson
//	00000000000000262145.ndjson
//	current -> 00000000000000262145.ndjson   (symlink to the segment being written)
//	.lock                                     (flock: one writer per directory)
//
// Each line is one record:
//
//	{"ts":"2026-11-22T05:00:00.123456789Z","src":"proxy","seq":42,"data":{"msg":"up"},"crc":"1a2b3c4d"}
//
// ts is UTC with nanoseconds, src who sent it, seq a number that increases by one per record
// for the life of the directory, data a compact JSON value (an object, or a string for text)
// and crc the CRC-32C (Castagnoli) of the line's bytes before `,"crc"`, in lowercase hex.
// The files can be read by grep, jq, the file inputs of Filebeat, Fluent Bit and Vector
// (glob *.ndjson; they track files by inode) and tail -F. tail -F on the "current" symlink
// follows from segment to segment, but like any tail -F on rotated files it can miss the
// last lines written to a segment just before a rotation; Store.Reader with Follow does not.
//
// # Bound
//
// The sum of the segment files' sizes never exceeds Options.MaxBytes: before a record is
// written, whole oldest segments are deleted until it fits. The accounting includes what is
// still in the write buffer, so the bound holds at every moment, not only eventually.
// Eviction works a segment at a time, so segments are kept to at most a quarter of MaxBytes.
//
// # Durability
//
// Writes go through one fixed-size buffer. Append returns once its records are as durable as
// the policy says: under PolicyAlways after an fdatasync that covers them (concurrent
// Appends share one fdatasync: group commit), under PolicyInterval after the next periodic
// fdatasync, under PolicyNever after write(2). Write and WaitDurable split Append in two for
// callers that pipeline. Files and the directory are fsynced after creating and deleting
// segments.
//
// # Crashes and damage
//
// Open scans only the tail of the last segment: whatever follows its last valid record (a
// torn line, zeros) is cut off, so a torn record is never served. Damage anywhere else (a
// line that is not a record or whose CRC does not match) is skipped and counted by readers,
// never a reason to refuse to start.
//
// # Full disk
//
// When write(2) fails with ENOSPC the store deletes its own oldest segments and retries. When
// nothing is left to delete it cuts the partial line, drops the records it could not write
// (their Append fails with ErrDropped), counts them, reports itself degraded through Health,
// and tries again with the next write.
//
// # Readers
//
// Readers open the files on their own and never take the writer's lock. A reader whose
// segment is deleted under it moves on to the oldest remaining segment and counts the
// records it missed.
package store
