(*
Module: Pulp
  Lossless lens for Pulp 2's /etc/pulp/server.conf.

Author: the pulpinit project

About: The dialect
  Pulp 2 reads server.conf with Python 2's SafeConfigParser.  This lens
  accepts the part of that dialect that Pulp's stock files (2.4 ... 2.21)
  and careful operators use, and maps every byte so that a load and a save
  without changes give back the file byte for byte:

  - "[section]" headers (trailing blanks allowed);
  - "key: value" and "key = value" entries, with any blanks around the
    separator and at the end of the line; an entry whose value changes keeps
    its separator and spacing; "key:" (empty value) is a valueless node;
  - comment lines starting with "#" or ";" (commented defaults such as
    "# seeds: localhost:27017", commented-out sections such as "# [ldap]",
    prose and its indented continuation lines "#     more prose");
  - blank lines, which may hold blanks.

  Values are kept literally: "#" and ";" inside a value are part of the value
  (SafeConfigParser has no "#" inline comments, and ";" starts one only after
  a blank; pulpinit refuses to write such a value, see pulpinit.configfile).

  Not accepted (parse error with line and position): lines that start with a
  blank but hold text.  For SafeConfigParser such a line continues the
  previous value (or is a syntax error before the first key), so it is never
  a comment; pulpinit does not edit multi-line values.  Keys and section
  names are limited to letters, digits, "_", "-" and ".".

About: Tree
  > /files/etc/pulp/server.conf/#comment         = "Pulp Server Configuration"
  > /files/etc/pulp/server.conf/#empty
  > /files/etc/pulp/server.conf/database          (the [database] section)
  > /files/etc/pulp/server.conf/database/#comment = "seeds: localhost:27017"
  > /files/etc/pulp/server.conf/database/seeds    = "db:27017"
  > /files/etc/pulp/server.conf/database/password (an empty value)

  Blank lines are "#empty" nodes (not hidden) so that tools can see where a
  section's entries end and the prose that introduces the next one begins.
  Nodes created without a template are written "key: value", "# text" and
  an empty line.
*)
module Pulp =
  autoload xfm

(* View: eol
   End of line; trailing blanks (and a CR) are kept. *)
let eol = del /[ \t\r]*\n/ "\n"

(* Variable: text
   One or more characters, neither starting nor ending with a blank. *)
let text = /[^ \t\r\n]([^\n]*[^ \t\r\n])?/

(* Variable: name
   Keys and section names. *)
let name = /[A-Za-z0-9_.-]+/

(* View: comment
   "# text" or "; text"; a bare "#" line has no value. *)
let comment = [ label "#comment" . del /[#;][ \t]*/ "# " . store text . eol ]
            | [ label "#comment" . del /[#;][ \t\r]*\n/ "#\n" ]

(* View: empty
   A blank line. *)
let empty = [ label "#empty" . del /[ \t\r]*\n/ "\n" ]

(* View: entry
   "key: value", "key = value", "key:" ... The separator (with the blanks in
   front of it) is outside the optional value, so giving a valueless entry a
   value keeps its ":" or "=". *)
let entry = [ key name . del /[ \t]*[:=]/ ":"
              . (del /[ \t]*/ " " . store text)? . eol ]

(* View: title *)
let title = del "[" "[" . key name . del "]" "]" . eol

(* View: section
   A header and everything up to the next header, including the blank lines
   and prose that introduce the next section. *)
let section = [ title . (entry | comment | empty)* ]

(* View: lns *)
let lns = (comment | empty)* . section*

let filter = incl "/etc/pulp/server.conf"

let xfm = transform lns filter
