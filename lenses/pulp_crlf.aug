(*
Module: Pulp_crlf
  The Pulp lens for files whose lines end in CRLF: the lines it adds end in CRLF too.
  A module of its own so that pulpinit compiles it only for such files.
*)
module Pulp_crlf =

(* View: lns *)
let lns = Pulp.mk_lns "\r\n"
