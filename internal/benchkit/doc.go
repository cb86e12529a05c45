// Package benchkit holds what lfnet's benchmarks share: the gossip benchmark of
// topics/gossip, cmd/lfsim's HyParView tables and cmd/lfbench's scenarios. It measures;
// it never judges (targets live with the benchmarks that report them).
package benchkit
