"""Network checks: TCP/UDP (iperf3, sockperf, qperf) and RDMA (perftest)."""
