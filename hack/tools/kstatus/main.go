// Command kstatus reads one Kubernetes object (JSON or YAML) on stdin and
// prints its kstatus status and message, computed by
// sigs.k8s.io/cli-utils/pkg/kstatus/status, as two lines:
//
//	Current
//	Resource is Ready
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		fail("parsing the object: %v", err)
	}
	// Unstructured's own decoder keeps integers as int64, as kstatus expects.
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(js); err != nil {
		fail("decoding the object: %v", err)
	}
	res, err := status.Compute(obj)
	if err != nil {
		fail("computing the status: %v", err)
	}
	fmt.Printf("%s\n%s\n", res.Status, res.Message)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(1)
}
