// Package test holds lfnet's multi-node tests: many nodes in one process, several
// processes of the lfchat demo, and (where a Docker daemon runs) containers on their own
// networks. It has no library code.
package test
