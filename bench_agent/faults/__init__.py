"""The fault catalog: stable codes, components and remediations for verdicts.

``catalog`` reads bench_agent/faults/catalog.yaml (the data); ``assign`` gives
each FAIL, ERROR and WARN verdict of a report its code, the component that
broke and the remediation. The runner and `bench-agent health` call
``assign.assign_faults``; `bench-agent faults` lists the catalog.
"""
