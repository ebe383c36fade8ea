// Command lakefs builds the upstream lakeFS server from the Go module proxy.
//
// lakeFS ships no PyPI/npm/Debian package, so dfp builds it from this tiny
// wrapper module (pinned in go.mod) instead of downloading a release binary.
package main

import "github.com/treeverse/lakefs/cmd/lakefs/cmd"

func main() {
	cmd.Execute()
}
