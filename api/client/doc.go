// Package client is a small Go client for stockd's public gRPC API
// (api/stockdv1) that knows which answers may be retried and how.
//
// A Client holds one grpc.ClientConn per configured node address and hands
// out the generated service clients (Inventory, Erp, Admin, Cluster). Every
// unary call made through them runs through one retrying layer:
//
//   - Deadline: a call whose context has no deadline gets Config.Timeout as
//     its overall deadline; each attempt may be bounded further by
//     Config.AttemptTimeout.
//   - Retry: an answer that Classify rates RetrySameID is retried, with the
//     request resent unchanged (same reservation id, extend id, delta id,
//     ERP version), up to Config.MaxAttempts attempts in all, with
//     exponential backoff and jitter between attempts, never past the
//     caller's deadline. A google.rpc.RetryInfo retry_delay sent with the
//     answer is the least pause before the next attempt; a pause that would
//     end after the deadline is not taken. When the attempts or the time run
//     out, the call returns the last attempt's error unchanged (status.Code
//     works on it), so Classify can still tell the caller what to do.
//     Resending is safe because stockd's writes are idempotent (DESIGN.md
//     I3): the same id with the same payload answers the first answer.
//   - Addresses: the Client sticks to one address and moves to the next (in
//     Config.Addrs order, wrapping round) after an attempt that failed with a
//     retryable code, so later calls go there too. Any node serves reads
//     and forwards writes to the leader, so which node a call reaches does
//     not matter for correctness.
//   - Writes to the leader: a follower that forwarded a write names the
//     leader in the LeaderHeader response header. When that is one of
//     Config.Addrs, the Client sends its later calls of that method (a
//     write: Reserve, Confirm, SetStock...) straight there, which saves the
//     follower's hop; reads stay where they were. A retryable failure on the
//     leader makes it forget the leader until a follower names one again.
//
// Streams (ReserveStream, Watch, PushStock, Backfill, PullOrders,
// ExportStock, SaveSnapshot) are opened on the current address with neither
// a default deadline nor retries: a broken stream is the caller's to reopen
// (ReserveStream: resend the unanswered requests with the same ids; Watch:
// resume from the last revision received).
//
// The package imports only the protobuf and grpc runtimes (with the
// google.rpc error details) and api/stockdv1, never another stockd package.
package client
