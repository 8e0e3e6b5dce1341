# The Claude Code agent image: `nix build .#claude-code-image && docker load < result`.
# Claude Code is unfree; flake.nix allows exactly this package.
{ pkgs }:
let
  base = import ./base.nix { inherit pkgs; };
in
pkgs.dockerTools.buildLayeredImage {
  name = "proctor-claude-code";
  tag = "latest";
  contents = base.contents ++ [
    pkgs.claude-code
    pkgs.nodejs
    pkgs.ripgrep
  ];
  inherit (base) extraCommands;
  config = {
    Env = base.env ++ [
      "DISABLE_AUTOUPDATER=1"
      "DISABLE_INSTALLATION_CHECKS=1"
    ];
    WorkingDir = "/work";
    Labels."proctor.image" = "proctor-claude-code:latest";
  };
}
