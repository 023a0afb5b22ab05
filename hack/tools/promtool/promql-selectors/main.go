// Command promql-selectors parses PromQL expressions with Prometheus' own
// parser and prints the series selectors in them, so that a test can compare
// the metric names and label names that alerts and dashboards use with what
// the operator exports.
//
// Input (stdin): a JSON array of expressions. Output (stdout): a JSON array,
// one entry per expression, in order:
//
//	{"expr": "...", "error": "...", "selectors": [{"metric": "...", "labels": ["..."]}]}
//
// "error" is set (and "selectors" empty) when the expression does not parse.
// "labels" are the names of the selector's label matchers, __name__ left out.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type selector struct {
	Metric string   `json:"metric"`
	Labels []string `json:"labels"`
}

type result struct {
	Expr      string     `json:"expr"`
	Error     string     `json:"error,omitempty"`
	Selectors []selector `json:"selectors"`
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintf(os.Stderr, "promql-selectors: reading a JSON array of expressions from stdin: %v\n", err)
		os.Exit(2)
	}
	p := parser.NewParser(parser.Options{})
	out := make([]result, 0, len(exprs))
	for _, e := range exprs {
		out = append(out, inspect(p, e))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintf(os.Stderr, "promql-selectors: %v\n", err)
		os.Exit(1)
	}
}

func inspect(p parser.Parser, e string) result {
	r := result{Expr: e, Selectors: []selector{}}
	ast, err := p.ParseExpr(e)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		s := selector{Metric: vs.Name, Labels: []string{}}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName {
				// {__name__="x"} is the same as x; a regular expression on
				// the name cannot be checked against a list of names.
				if s.Metric == "" && m.Type == labels.MatchEqual {
					s.Metric = m.Value
				}
				continue
			}
			s.Labels = append(s.Labels, m.Name)
		}
		sort.Strings(s.Labels)
		r.Selectors = append(r.Selectors, s)
		return nil
	})
	return r
}
