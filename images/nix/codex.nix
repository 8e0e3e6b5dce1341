# The Codex CLI agent image: `nix build .#codex-image && docker load < result`.
# nixpkgs builds Codex from its Rust sources (the npm package wraps the
# same binary), so this image needs no Node.js.
{ pkgs }:
let
  base = import ./base.nix { inherit pkgs; };
in
pkgs.dockerTools.buildLayeredImage {
  name = "proctor-codex";
  tag = "latest";
  contents = base.contents ++ [
    pkgs.codex
    pkgs.ripgrep
  ];
  inherit (base) extraCommands;
  config = {
    Env = base.env ++ [ "CODEX_HOME=/tmp/.codex" ];
    WorkingDir = "/work";
    Labels."proctor.image" = "proctor-codex:latest";
  };
}
