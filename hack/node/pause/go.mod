// Module pause is the test node's sandbox ("pause") container: it holds a
// pod's namespaces open and does nothing else.
module github.com/collibra-oauth-operator/hack/node/pause

go 1.26.0
