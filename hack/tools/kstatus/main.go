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
	obj := map[string]interface{}{}
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		fail("parsing the object: %v", err)
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		fail("computing the status: %v", err)
	}
	fmt.Printf("%s\n%s\n", res.Status, res.Message)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(1)
}
