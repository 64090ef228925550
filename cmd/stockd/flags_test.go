package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

// TestFlagsFromEnvironment: every flag reads STOCKD_<NAME>, the command line
// wins over it, a bad value names its variable, and --help lists each flag
// with its variable.
func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("STOCKD_DATA_DIR", "/srv/stockd")
	t.Setenv("STOCKD_MAX_BATCH", "64")
	t.Setenv("STOCKD_LINGER", "3ms")
	t.Setenv("STOCKD_INSECURE", "true")
	t.Setenv("STOCKD_NODE_ID", "from-env")
	o, err := parseFlags([]string{"--node-id", "from-flag"}, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	if o.dataDir != "/srv/stockd" || o.maxBatch != 64 || o.linger != 3*time.Millisecond || !o.insecure {
		t.Errorf("from the environment: data dir %q, max batch %d, linger %v, insecure %t; want /srv/stockd, 64, 3ms, true",
			o.dataDir, o.maxBatch, o.linger, o.insecure)
	}
	if o.nodeID != "from-flag" {
		t.Errorf("--node-id from-flag with STOCKD_NODE_ID=from-env: %q, want the flag's", o.nodeID)
	}

	t.Setenv("STOCKD_MAX_BATCH", "many")
	if _, err := parseFlags(nil, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "$STOCKD_MAX_BATCH") {
		t.Errorf("STOCKD_MAX_BATCH=many: %v, want an error naming the variable", err)
	}
	t.Setenv("STOCKD_MAX_BATCH", "64")

	var help bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v, want flag.ErrHelp", err)
	}
	for _, name := range []string{"data-dir", "grpc-addr", "auth-file", "tls-cert", "http-addr", "peer-token-file", "memory-ratio", "gc-cpu-target"} {
		if !strings.Contains(help.String(), "-"+name) || !strings.Contains(help.String(), "$"+envName(name)) {
			t.Errorf("--help lacks -%s with $%s:\n%s", name, envName(name), help.String())
		}
	}
	if !strings.Contains(help.String(), `(default "./data")`) {
		t.Errorf("--help lacks the defaults:\n%s", help.String())
	}
}

func TestFlagRangesAreChecked(t *testing.T) {
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"--memory-ratio", "0"}, true},
		{[]string{"--memory-ratio", "1.1"}, true},
		{[]string{"--memory-ratio", "1.05"}, false},
		{[]string{"--gc-cpu-target", "0"}, true},
		{[]string{"--gc-cpu-target", "0.05"}, true},
		{[]string{"--gc-cpu-target", "-0.1"}, false},
		{[]string{"--gc-cpu-target", "1"}, false},
	} {
		_, err := parseFlags(c.args, &bytes.Buffer{})
		if c.ok && err != nil {
			t.Errorf("%v: %v", c.args, err)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), c.args[0])) {
			t.Errorf("%v: error %v, want one naming %s", c.args, err, c.args[0])
		}
	}
}
