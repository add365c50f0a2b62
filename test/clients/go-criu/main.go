// A go-criu client, as runc and podman drive criu: `criu swrk` over a
// socketpair, through Debian's golang-github-checkpoint-restore-go-criu-dev.
// The tests build it (GOPATH=/usr/share/gocode, no modules, offline) and
// point it at crest:
//
//	go-criu-client CRIU version
//	go-criu-client CRIU dump PID DIR
//	go-criu-client CRIU restore DIR
//
// It prints what go-criu returned, and the notifications it got, one a line.
package main

import (
	"fmt"
	"os"
	"strconv"

	criu "github.com/checkpoint-restore/go-criu"
	"github.com/checkpoint-restore/go-criu/rpc"
	"google.golang.org/protobuf/proto"
)

// notes prints each notification as go-criu hands it over.
type notes struct{ criu.NoNotify }

func (notes) PreDump() error  { fmt.Println("notify pre-dump"); return nil }
func (notes) PostDump() error { fmt.Println("notify post-dump"); return nil }
func (notes) PreRestore() error {
	fmt.Println("notify pre-restore")
	return nil
}
func (notes) PostRestore(pid int32) error { fmt.Println("notify post-restore", pid); return nil }
func (notes) SetupNamespaces(pid int32) error {
	fmt.Println("notify setup-namespaces", pid)
	return nil
}
func (notes) PostSetupNamespaces() error { fmt.Println("notify post-setup-namespaces"); return nil }
func (notes) PostResume() error         { fmt.Println("notify post-resume"); return nil }

func fail(err error) {
	fmt.Println("error:", err)
	os.Exit(1)
}

func dir(path string) int32 {
	f, err := os.Open(path)
	if err != nil {
		fail(err)
	}
	return int32(f.Fd())
}

func main() {
	c := criu.MakeCriu()
	c.SetCriuPath(os.Args[1])
	switch os.Args[2] {
	case "version":
		v, err := c.GetCriuVersion()
		if err != nil {
			fail(err)
		}
		ok, err := c.IsCriuAtLeast(31400)
		if err != nil {
			fail(err)
		}
		fmt.Println("version", v, "at-least-3.14", ok)
	case "dump":
		pid, _ := strconv.Atoi(os.Args[3])
		opts := &rpc.CriuOpts{
			Pid: proto.Int32(int32(pid)), ImagesDirFd: proto.Int32(dir(os.Args[4])),
			LogLevel: proto.Int32(4), LogFile: proto.String("dump.log"),
		}
		if err := c.Dump(opts, notes{}); err != nil {
			fail(err)
		}
		fmt.Println("dumped")
	case "restore":
		opts := &rpc.CriuOpts{ImagesDirFd: proto.Int32(dir(os.Args[3])), LogLevel: proto.Int32(4), LogFile: proto.String("restore.log")}
		if err := c.Restore(opts, notes{}); err != nil {
			fail(err)
		}
		fmt.Println("restored")
	}
}
