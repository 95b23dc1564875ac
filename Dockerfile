# Build: docker build -t avs-server .
# Run:   docker run --network host -v avs-data:/data avs-server
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/avs-server ./cmd/avs-server \
 && mkdir -p /out/data

# The binary is pure Go (SQLite included), so the runtime image needs no libc.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/avs-server /usr/local/bin/avs-server
COPY --from=build --chown=nonroot:nonroot /out/data /data
COPY config.toml /etc/avs/config.toml
WORKDIR /data
USER nonroot:nonroot
# HTTP (signaling, WHIP/WHEP, admin, health), metrics, WebRTC media (UDP mux
# and ICE-TCP), TURN (UDP/TCP, TLS) and the TURN relay range.
EXPOSE 8080/tcp 9090/tcp 7882/udp 7881/tcp 3478/udp 3478/tcp 5349/tcp 49160-49200/udp
ENTRYPOINT ["/usr/local/bin/avs-server", "-config", "/etc/avs/config.toml"]
