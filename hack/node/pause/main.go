// Command pause sleeps until SIGTERM or SIGINT, as the sandbox container of
// every pod on the test node (the role of Kubernetes' own pause image, which
// would have to be pulled from a registry).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
