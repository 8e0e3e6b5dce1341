# A general verifier (exam) image: `nix build .#verifier-image && docker load < result`.
# Bash and POSIX tools, git, make, a C compiler, Python 3 with pytest,
# Node.js with npm. Add the toolchains your exams need to `contents`.
{ pkgs }:
let
  base = import ./base.nix { inherit pkgs; };
in
pkgs.dockerTools.buildLayeredImage {
  name = "proctor-verifier";
  tag = "latest";
  contents = base.contents ++ (with pkgs; [
    gnumake
    gcc
    pkg-config
    patch
    file
    (python3.withPackages (ps: [ ps.pytest ]))
    nodejs
  ]);
  inherit (base) extraCommands;
  config = {
    Env = base.env;
    WorkingDir = "/work";
    Labels."proctor.image" = "proctor-verifier:latest";
  };
}
