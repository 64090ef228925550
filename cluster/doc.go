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
//   - membership: bootstrap of a one-voter cluster, or (with Config.Join and
//     no raft state) asking existing members to admit this node; Join and
//     Leave (raft configuration change plus a PutNode/RemoveNode record);
//     the leader registering its own record; leadership hand-off at Close;
//   - the Peer service (NewPeerServer) and its client side: a follower
//     forwards a write once to the leader, asks it for a read index, and
//     Status gathers every member's NodeStatus;
//   - the feature gate: a command is proposed only once every voter's
//     record advertises its feature version (ClusterFeatureVersion);
//   - offline tools: SaveSnapshot, RestoreSnapshot, RecoverCluster;
//   - translation of raft's errors into ErrNotLeader, ErrNoLeader,
//     ErrStopped and ErrQueueFull, and of peers' gRPC codes back into them.
//
// Raft timing is tuned for a LAN with failover under 2 s: HeartbeatTimeout
// and ElectionTimeout 500 ms (a follower notices a dead leader within
// 0.5-1 s and the election takes about one more timeout), LeaderLeaseTimeout
// 500 ms (a partitioned leader steps down within half a second; 250 ms made
// a busy leader on a shared 2-core machine step down), CommitTimeout 5 ms
// (raft's 50 ms default delays an isolated write's replication).
//
// What it must never do:
//   - decide anything a replica could decide differently: time enters the
//     log only through the stamp the leader puts on an entry, and the FSM
//     adapter never reads a clock, validates, filters or reorders;
//   - apply an entry it cannot decode, or serve state from a snapshot whose
//     digest does not match: it panics, or fails to start, instead;
//   - import server, cmd or bench, or let raft's types and errors escape its
//     API;
//   - start a goroutine outside Node.Start (and Status, which waits for its
//     bounded NodeStatus calls); each one exits at Node.Close (the batcher,
//     the waiter, the ticker, the replay watcher, the registrar, the join
//     loop), after which raft is shut down, its stores and the peer
//     connections are closed;
//   - forward a write more than once: a Peer.Propose on a node that does
//     not lead answers Unavailable.
package cluster
