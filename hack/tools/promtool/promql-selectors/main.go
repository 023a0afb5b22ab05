// Command promql-selectors parses PromQL expressions with Prometheus' own
// parser and prints the series selectors in them, so that a test can compare
// the metric names and label names that alerts and dashboards use with what
// the operator exports.
//
// Input (stdin): a JSON array of expressions. Output (stdout): a JSON array,
// one entry per expression, in order:
//
//	{"expr": "...", "error": "...",
//	 "selectors": [{"metric": "...", "labels": ["..."]}],
//	 "groupings": [{"labels": ["..."], "metrics": ["..."]}]}
//
// "error" is set (and the lists empty) when the expression does not parse.
// A selector's "labels" are the names of its label matchers, __name__ left
// out. A grouping is an aggregation's `by (...)` labels with the metrics it
// aggregates (whose series should carry them).
//
// With -exposition CONTENT_TYPE it reads a scrape instead (the body of
// /metrics and its Content-Type) and prints the series names Prometheus would
// store, each with the label names seen on it: {"name": ["label", ...]}.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/promql/parser"
)

type selector struct {
	Metric string   `json:"metric"`
	Labels []string `json:"labels"`
}

type grouping struct {
	Labels  []string `json:"labels"`
	Metrics []string `json:"metrics"`
}

type result struct {
	Expr      string     `json:"expr"`
	Error     string     `json:"error,omitempty"`
	Selectors []selector `json:"selectors"`
	Groupings []grouping `json:"groupings"`
}

func main() {
	exposition := flag.String("exposition", "", "read a scrape with this Content-Type from stdin and print its series names")
	flag.Parse()
	if *exposition != "" {
		if err := names(*exposition); err != nil {
			fmt.Fprintf(os.Stderr, "promql-selectors: %v\n", err)
			os.Exit(1)
		}
		return
	}
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
	r := result{Expr: e, Selectors: []selector{}, Groupings: []grouping{}}
	ast, err := p.ParseExpr(e)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		if agg, ok := n.(*parser.AggregateExpr); ok && !agg.Without && len(agg.Grouping) > 0 {
			g := grouping{Labels: append([]string{}, agg.Grouping...), Metrics: []string{}}
			parser.Inspect(agg.Expr, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
					g.Metrics = append(g.Metrics, vs.Name)
				}
				return nil
			})
			r.Groupings = append(r.Groupings, g)
			return nil
		}
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

// names parses a scrape with Prometheus' own scrape parser and prints every
// series name (counters with their _total, histograms as _bucket, _sum and
// _count, as stored) with the label names seen on it.
func names(contentType string) error {
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	p, err := textparse.New(body, contentType, nil, textparse.ParserOptions{})
	if err != nil {
		return fmt.Errorf("content type %q: %w", contentType, err)
	}
	seen := map[string]map[string]bool{}
	for {
		entry, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("parsing the scrape: %w", err)
		}
		if entry != textparse.EntrySeries && entry != textparse.EntryHistogram {
			continue
		}
		var ls labels.Labels
		p.Labels(&ls)
		name := ls.Get(labels.MetricName)
		if seen[name] == nil {
			seen[name] = map[string]bool{}
		}
		ls.Range(func(l labels.Label) {
			if l.Name != labels.MetricName {
				seen[name][l.Name] = true
			}
		})
	}
	out := map[string][]string{}
	for name, set := range seen {
		list := []string{}
		for l := range set {
			list = append(list, l)
		}
		sort.Strings(list)
		out[name] = list
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
