package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/stockd/stockd/api/stockdv1"
)

// Synopses of the cluster commands, shown with their usage errors.
const (
	clusterStatusSynopsis = ""
	clusterJoinSynopsis   = "--node-id ID --raft-addr HOST:PORT --grpc-addr HOST:PORT [--feature-version 1]"
	clusterLeaveSynopsis  = "--node-id ID"
	snapshotSaveSynopsis  = "FILE"
)

// digestPrefixLen is how many hex digits of a state digest the table shows.
const digestPrefixLen = 12

// clusterStatus prints the answering node's view of the cluster.
func (s *session) clusterStatus(ctx context.Context, args []string) error {
	fs := s.newFlags("cluster status", clusterStatusSynopsis)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, clusterStatusSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.cluster()
	if err != nil {
		return err
	}
	resp, err := c.Status(ctx, &stockdv1.StatusRequest{IncludeDigests: true})
	if err != nil {
		return err
	}
	if s.opts.json {
		if err := printJSON(s.stdout, resp); err != nil {
			return err
		}
	} else if err := printClusterStatus(s.stdout, resp); err != nil {
		return err
	}
	if d := divergence(resp.GetMembers()); d != "" {
		return &exitError{msg: d}
	}
	return nil
}

// printClusterStatus writes one row per member and a summary line.
func printClusterStatus(w io.Writer, r *stockdv1.StatusResponse) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "NODE\tROLE\tVOTER\tRAFT\tGRPC\tAPPLIED\tLAG\tDIGEST")
	for _, m := range r.GetMembers() {
		voter := "no"
		if m.GetVoter() {
			voter = "yes"
		}
		digest := m.GetStateDigest()
		if len(digest) > digestPrefixLen {
			digest = digest[:digestPrefixLen]
		}
		if digest == "" {
			digest = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", m.GetNodeId(), m.GetRole(), voter,
			m.GetRaftAddr(), m.GetGrpcAddr(), m.GetAppliedIndex(), m.GetLag(), digest)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	leader := "no leader known"
	if r.GetLeaderId() != "" {
		leader = "leader " + r.GetLeaderId()
		if r.GetLeaderRaftAddr() != "" {
			leader += " (" + r.GetLeaderRaftAddr() + ")"
		}
	}
	_, err := fmt.Fprintf(w, "%s, term %d, commit index %d, cluster feature version %d; answered by %s\n",
		leader, r.GetTerm(), r.GetCommitIndex(), r.GetClusterFeatureVersion(), r.GetNodeId())
	return err
}

// divergence names members that applied the same index yet report different
// state digests: replicas that no longer agree (DESIGN.md I4). Empty when
// none do; members without a digest are left out.
func divergence(members []*stockdv1.Member) string {
	byIndex := map[uint64][]*stockdv1.Member{}
	var indexes []uint64
	for _, m := range members {
		if m.GetStateDigest() == "" {
			continue
		}
		i := m.GetAppliedIndex()
		if _, ok := byIndex[i]; !ok {
			indexes = append(indexes, i)
		}
		byIndex[i] = append(byIndex[i], m)
	}
	var found []string
	for _, i := range indexes {
		group := byIndex[i]
		for _, m := range group[1:] {
			if m.GetStateDigest() != group[0].GetStateDigest() {
				names := make([]string, len(group))
				for j, g := range group {
					names[j] = g.GetNodeId()
				}
				found = append(found, fmt.Sprintf("at applied index %d among %s", i, strings.Join(names, ", ")))
				break
			}
		}
	}
	if len(found) == 0 {
		return ""
	}
	return "state digests differ " + strings.Join(found, "; ")
}

// clusterJoin admits a node as a voter.
func (s *session) clusterJoin(ctx context.Context, args []string) error {
	fs := s.newFlags("cluster join", clusterJoinSynopsis)
	nodeID := fs.String("node-id", "", "id of the joining node (required)")
	raftAddr := fs.String("raft-addr", "", "address raft peers reach the node on (required)")
	grpcAddr := fs.String("grpc-addr", "", "address of the node's gRPC API (required)")
	featureVersion := fs.Uint("feature-version", 1, "highest log feature version the node's build applies, >= 1")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, clusterJoinSynopsis, "node-id", "raft-addr", "grpc-addr"); err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, clusterJoinSynopsis, "unexpected argument %q", rest[0])
	}
	if *featureVersion < 1 || *featureVersion > 1<<32-1 {
		return usagef(fs, clusterJoinSynopsis, "--feature-version must be 1 to %d, got %d", uint32(1<<32-1), *featureVersion)
	}
	c, err := s.cluster()
	if err != nil {
		return err
	}
	resp, err := c.Join(ctx, &stockdv1.JoinRequest{
		NodeId:         *nodeID,
		RaftAddr:       *raftAddr,
		GrpcAddr:       *grpcAddr,
		FeatureVersion: uint32(*featureVersion),
	})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	_, err = fmt.Fprintf(s.stdout, "node %s joined (raft %s, grpc %s), revision %d\n", *nodeID, *raftAddr, *grpcAddr, resp.GetRevision())
	return err
}

// clusterLeave removes a node from the cluster.
func (s *session) clusterLeave(ctx context.Context, args []string) error {
	fs := s.newFlags("cluster leave", clusterLeaveSynopsis)
	nodeID := fs.String("node-id", "", "id of the node to remove (required)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, clusterLeaveSynopsis, "node-id"); err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, clusterLeaveSynopsis, "unexpected argument %q", rest[0])
	}
	c, err := s.cluster()
	if err != nil {
		return err
	}
	resp, err := c.Leave(ctx, &stockdv1.LeaveRequest{NodeId: *nodeID})
	if err != nil {
		return err
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	_, err = fmt.Fprintf(s.stdout, "node %s left, revision %d\n", *nodeID, resp.GetRevision())
	return err
}

// snapshotSave streams a snapshot of the node's state into FILE. FILE
// appears only once the whole stream arrived and reached the disk; a failed
// or interrupted stream leaves whatever FILE was before.
func (s *session) snapshotSave(ctx context.Context, args []string) error {
	fs := s.newFlags("snapshot save", snapshotSaveSynopsis)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef(fs, snapshotSaveSynopsis, "want exactly one FILE, got %d arguments", len(rest))
	}
	path := rest[0]
	c, err := s.cluster()
	if err != nil {
		return err
	}
	// Cancelling on return releases the stream if a write fails mid-way.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.SaveSnapshot(ctx, &stockdv1.SaveSnapshotRequest{})
	if err != nil {
		return err
	}
	var size int64
	var index uint64
	err = writeFileAtomically(path, func(w io.Writer) error {
		var err error
		size, index, err = copySnapshot(w, stream)
		return err
	})
	if err != nil {
		return err
	}
	if s.opts.json {
		b, err := json.Marshal(struct {
			File  string `json:"file"`
			Bytes int64  `json:"bytes"`
			Index uint64 `json:"index"`
		}{path, size, index})
		if err != nil {
			return fmt.Errorf("encode snapshot summary: %w", err)
		}
		_, err = fmt.Fprintf(s.stdout, "%s\n", b)
		return err
	}
	_, err = fmt.Fprintf(s.stdout, "snapshot saved to %s: %d bytes at index %d\n", path, size, index)
	return err
}

// chunkReceiver is the receiving end of a SaveSnapshot stream.
type chunkReceiver interface {
	Recv() (*stockdv1.SnapshotChunk, error)
}

// copySnapshot writes every chunk of stream to w and returns the bytes
// written and the index the snapshot reflects. Every chunk must carry the
// same index, and a snapshot without data is refused.
func copySnapshot(w io.Writer, stream chunkReceiver) (int64, uint64, error) {
	var size int64
	var index uint64
	chunks := 0
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return size, index, err
		}
		if chunks == 0 {
			index = c.GetIndex()
		} else if c.GetIndex() != index {
			return size, index, fmt.Errorf("snapshot chunk %d: index %d, want %d as in the chunks before", chunks, c.GetIndex(), index)
		}
		chunks++
		n, err := w.Write(c.GetData())
		size += int64(n)
		if err != nil {
			return size, index, err
		}
	}
	if size == 0 {
		return 0, index, errors.New("the server sent an empty snapshot")
	}
	return size, index, nil
}

// writeFileAtomically runs fill on a temporary file beside path, syncs it and
// renames it over path, so path is either untouched or complete. On failure
// the temporary file is removed. The file is readable by its owner only: a
// snapshot holds every figure of the business.
func writeFileAtomically(path string, fill func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	tmp, closed, renamed := f.Name(), false, false
	defer func() {
		if err == nil || renamed {
			return
		}
		if !closed {
			if cerr := f.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("close %s: %w", tmp, cerr))
			}
		}
		if rerr := os.Remove(tmp); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove %s: %w", tmp, rerr))
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	closed = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	renamed = true
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return fmt.Errorf("sync %s: %w", dir, serr)
	}
	if cerr != nil {
		return fmt.Errorf("close %s: %w", dir, cerr)
	}
	return nil
}
