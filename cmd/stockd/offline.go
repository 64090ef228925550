package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/stockd/stockd/cluster"
	"github.com/stockd/stockd/store"
)

// offlineFlags are the flags both offline subcommands share: which node and
// data folder they work on.
type offlineFlags struct {
	dataDir, nodeID, raftAddr string
}

func (f *offlineFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", "./data", "the node's data folder")
	fs.StringVar(&f.nodeID, "node-id", "node-1", "the node's id")
	fs.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:7401", "the node's raft address")
}

// runRestore seeds an empty data folder from a snapshot file taken with
// `stockctl snapshot save`, so that stockd started on it is a one-voter
// cluster holding that state.
//
//	stockd restore [--data-dir D] [--node-id ID] [--raft-addr A] FILE
func runRestore(args []string, stderr io.Writer) error {
	var f offlineFlags
	fs := flag.NewFlagSet("stockd restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("restore: want one snapshot FILE, got %d arguments", fs.NArg())
	}
	in, err := os.Open(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer in.Close()
	if err := cluster.RestoreSnapshot(f.dataDir, f.nodeID, f.raftAddr, in); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	fmt.Fprintf(stderr, "restored %s into %s as node %s; start stockd on it\n", fs.Arg(0), f.dataDir, f.nodeID)
	return nil
}

// runRecover forces a stopped node's raft configuration to the given voters,
// for a cluster that lost its quorum for good (hashicorp/raft RecoverCluster).
// Run it on every surviving node with the same --voters, then start them.
//
//	stockd recover [--data-dir D] [--node-id ID] [--raft-addr A] [--voters id=addr,...]
func runRecover(args []string, stderr io.Writer) error {
	var f offlineFlags
	var voters string
	fs := flag.NewFlagSet("stockd recover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.register(fs)
	fs.StringVar(&voters, "voters", "", "the new voters as id=raftaddr,... (default: this node alone)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	servers := []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(f.nodeID), Address: raft.ServerAddress(f.raftAddr)}}
	if voters != "" {
		servers = servers[:0]
		for _, v := range strings.Split(voters, ",") {
			id, addr, ok := strings.Cut(strings.TrimSpace(v), "=")
			if !ok || id == "" || addr == "" {
				return fmt.Errorf("recover: --voters entry %q: want id=raftaddr", v)
			}
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
		}
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	cfg := cluster.Config{NodeID: f.nodeID, DataDir: f.dataDir, RaftAddr: f.raftAddr, GRPCAddr: "unused",
		Machine: store.New(store.DefaultConfig()), Logger: logger}
	if err := cluster.RecoverCluster(cfg, servers); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	fmt.Fprintf(stderr, "recovered %s: voters are now %s\n", f.dataDir, voters)
	return nil
}
