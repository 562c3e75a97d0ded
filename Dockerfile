# xapi-py in a container. Managing real VMs, LVM and bridges needs the host's devices:
#   docker run --privileged -v /var/lib/xapi-py:/var/lib/xapi-py -p 8443:8443 xapi-py
FROM debian:12
WORKDIR /opt/xapi-py
COPY . .
RUN bash scripts/setup.sh && rm -rf /var/lib/apt/lists/*
ENV XAPI_DATA_DIR=/var/lib/xapi-py
VOLUME /var/lib/xapi-py
EXPOSE 8443
CMD [".venv/bin/xapi-server"]
