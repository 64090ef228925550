# stockd container image. No base image and no builder stage: the binary is
# built static on the host first (make image does both steps):
#
#   CGO_ENABLED=0 GOOS=linux go build -trimpath -o bin/stockd-linux ./cmd/stockd
#   docker build -t stockd:dev .
#
# Ports: 7400 gRPC API (clients and the Peer service), 7401 raft.
# Run it with --grpc-addr 0.0.0.0:7400 --raft-addr 0.0.0.0:7401 and, in a
# cluster, --grpc-advertise/--raft-advertise names the other nodes can reach
# (deploy/compose.yaml shows a three-node cluster).
FROM scratch
COPY bin/stockd-linux /stockd
EXPOSE 7400 7401
VOLUME /data
ENTRYPOINT ["/stockd", "--data-dir", "/data"]
# Without flags: a single node; raft stays on loopback because 0.0.0.0 cannot
# be advertised to peers (a cluster passes --raft-addr and --raft-advertise).
CMD ["--grpc-addr", "0.0.0.0:7400", "--raft-addr", "127.0.0.1:7401", "--log-format", "json"]
