// Package cluster replicates stockd's state machine with hashicorp/raft.
//
// It owns everything between a decided command and the store.Machine that
// applies it:
//   - the raft node: its log and stable store in bbolt (raft-boltdb, DataDir/raft.db),
//     its snapshot store (DataDir/snapshots), its TCP transport, bootstrap
//     of a one-voter cluster on an empty folder;
//   - the batching proposer (Node.Propose): it groups concurrent callers'
//     commands into one log entry, stamps each entry with the leader's
//     monotonic time, and pipelines entries to raft, delivering each caller
//     its own store.Result;
//   - the FSM adapter, a thin forwarder: decode an entry, hand it to
//     Machine.ApplyEntry at its index, notify waiters;
//   - snapshots: the machine's canonical record stream in a bbolt container
//     with a sha256 digest over the stream, checked before a restore;
//   - the expiry ticker, which proposes a Tick while leading once the clock
//     passes the earliest hold deadline, so holds expire without traffic;
//   - translation of raft's errors into ErrNotLeader, ErrNoLeader,
//     ErrStopped and ErrQueueFull.
//
// What it must never do:
//   - decide anything a replica could decide differently: time enters the
//     log only through the stamp the leader puts on an entry, and the FSM
//     adapter never reads a clock, validates, filters or reorders;
//   - apply an entry it cannot decode, or serve state from a snapshot whose
//     digest does not match: it panics, or fails to start, instead;
//   - import server, cmd or bench, or let raft's types and errors escape its
//     API;
//   - start a goroutine outside Node.Start; each one exits at Node.Close
//     (the batcher, the waiter, the ticker, the replay watcher), after which
//     raft is shut down and its stores are closed.
package cluster
