# What every proctor image built with Nix shares: a shell at /bin/sh (proctor
# runs each command as `/bin/sh -c CMD`), /usr/bin/env for shebangs, the CA
# bundle, a minimal /etc/passwd and /etc/group (root, nobody), the usual
# command-line tools, and a world-writable /tmp (proctor mounts a tmpfs
# there; Docker copies the image directory's mode onto it).
{ pkgs }:
{
  contents = with pkgs; [
    dockerTools.binSh
    dockerTools.usrBinEnv
    dockerTools.caCertificates
    dockerTools.fakeNss
    bashInteractive
    coreutils
    findutils
    gnugrep
    gnused
    gawk
    diffutils
    gnutar
    gzip
    which
    procps
    gitMinimal
  ];

  extraCommands = ''
    mkdir -p tmp work
    chmod 1777 tmp
  '';

  env = [
    "PATH=/bin:/usr/bin"
    "HOME=/tmp"
    "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"
    "NIX_SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"
  ];
}
