"""KPIs: contact sums, the formulas of KPIS.md, time buckets. Pure: no I/O."""
