// Package server is stockd's gRPC front: the Inventory, Erp, Admin and
// Cluster services of api/stockdv1, gRPC health and reflection, and the
// interceptor chain they run behind (recovery outermost, then logging).
//
// A handler checks the request's shape, builds a store command, runs
// store.Validate on it (input errors are answered here and never proposed),
// hands it to a Proposer and turns the answer into a response. Reads go to a
// Reader (a *store.Machine satisfies it) and are stamped with the revision they
// reflect, read before the figures, so the stamp never claims more than the
// figures show (DESIGN.md I5); min_revision waits, bounded, for
// read-your-writes, and linearizable waits, within the same bound, for the
// read index a Cluster confirms. Every error becomes a gRPC status in one
// place, status.go: a business refusal keeps its code and the request field
// at fault, anything unexpected becomes INTERNAL with a generic message and
// its detail goes to the log, never to the client.
//
// Streams (stream.go): ReserveStream runs each request through the unary
// handler's own path in a goroutine of its own, at most 1,024 per stream,
// and stops reading while that window is full, so a client that stops
// reading holds a bounded amount of server memory and no other stream waits
// on it. Every goroutine a stream handler starts recovers its own panics and
// exits before the handler returns. PullOrders (outbox.go) sends the order
// outbox in pages and, when it follows, waits for each next applied revision
// (Proposer.WaitApplied: no polling) until the client leaves, the node stops
// or Drain ends it with UNAVAILABLE, so a graceful stop does not wait for it.
// Watch (watch.go, watchhub.go): one hub goroutine, started by the first
// Watch and ended after the last, follows the store's change log, computes
// each changed figure once per watched channel and hands it to the bounded,
// coalescing buffer of each matching stream without ever blocking; each
// stream's handler sends from its own buffer, so a stalled client slows no
// one, and a buffer that overflows becomes a resync, never a silent gap.
//
// HTTP/JSON (gateway.go): NewGateway serves the Inventory service's unary
// RPCs as REST/JSON through grpc-gateway's generated handlers
// (api/stockdv1/inventory.pb.gw.go, routes in proto/stockd/v1/gateway.yaml).
// It calls this node's own gRPC server over a client connection rather than
// the handlers directly, so an HTTP call passes the same interceptor chain
// (authorization included: the runtime forwards the Authorization header as
// the "authorization" metadata) and gets the same answer and status.
//
// server must never import cluster, raft or bbolt: the Proposer, Reader and
// Cluster interfaces (and the ClusterStatus they report) are declared here,
// and the cluster's infrastructure errors (not leader, stopped, queue full,
// feature not enabled) are recognised through sentinels passed in Config. A
// test checks the dependency list.
package server
