(*
Module: Pulp
  Lossless lens for Pulp 2's /etc/pulp/server.conf.

Author: the pulpinit project

About: The dialect
  Pulp 2 reads server.conf with Python 2.7's SafeConfigParser.  This lens
  accepts the lines that parser accepts, by the same rules (its SECTCRE and
  OPTCRE patterns, its comment, "rem" and continuation rules), and maps every
  byte so that a load and a save without changes give back the file byte for
  byte:

  - section headers: "[" then anything but "]" (spaces included: "[ s ]" is
    the section " s "), "]", then anything up to the end of the line
    ("[database] ; comment", "[database] junk" are the section "database");
  - entries "key: value" and "key = value": the key is everything up to the
    first ":" or "=" (so it may hold blanks: "my key = 1"), without the
    blanks before the separator; any blanks around the separator and at the
    end of the line; "key:" (empty value) is a valueless node;
  - comment lines whose first character is "#" or ";", and "rem" lines (the
    first word is "rem" in any case, at the start of the line);
  - continuation lines: a line starting with a blank that holds text, after
    the first entry of a section (blank lines and comments may come between):
    SafeConfigParser appends its text to the last entry's value;
  - blank lines, which may hold blanks;
  - CRLF line ends (Pulp_crlf.lns, in pulp_crlf.aug, gives new lines CRLF ends; Pulp.lns LF).

  Values are kept literally: "#" and ";" inside a value are part of it.  A
  value starting with ";" is stored with its trailing blanks (if any), since
  SafeConfigParser reads such a value as empty when a blank ends the line.

  Not accepted (parse error with line and position), because SafeConfigParser
  refuses them as well or because no editor should write them: a continuation
  line before a section's first entry or before any section, an entry before
  any section, a line without ":" or "=", a key that starts with "[" (a line
  that is no header: "[]" or "[" without "]"), vertical tabs and form feeds
  as blanks.

About: Tree
  > /files/etc/pulp/server.conf/#comment         = "Pulp Server Configuration"
  > /files/etc/pulp/server.conf/#empty
  > /files/etc/pulp/server.conf/database          (the [database] section)
  > /files/etc/pulp/server.conf/database/#comment = "seeds: localhost:27017"
  > /files/etc/pulp/server.conf/database/seeds    = "db:27017"
  > /files/etc/pulp/server.conf/database/#continued = "second line of seeds"
  > /files/etc/pulp/server.conf/database/password (an empty value)
  > /files/etc/pulp/server.conf/database/#rem     = "rem old style comment"

  Blank lines are "#empty" nodes (not hidden) so that tools can see where a
  section's entries end and the prose that introduces the next one begins.
  Nodes created without a template are written "key: value", "# text" and
  an empty line.
*)
module Pulp =
  autoload xfm

(* Variable: text
   One or more characters, neither starting nor ending with a blank. *)
let text = /[^ \t\r\n]([^\n]*[^ \t\r\n])?/

(* Variable: key_re
   OPTCRE's option: from a character that is no blank, up to the first ":"
   or "=", without the blanks before it; not a header, comment or "rem" line. *)
let key_re = /[^ \t\r\n#;[:=]([^\n:=]*[^ \t\r\n:=])?/ - /[rR][eE][mM]([ \t][^\n]*)?/

(* Variable: rem_key
   A key spelled "rem" counts only when the separator follows at once
   ("rem: x"); "rem : x" is a rem line. *)
let rem_key = /[rR][eE][mM]/

(* Variable: value_re
   A value not starting with ";": stored without the blanks at the end. *)
let value_re = /[^ \t\r\n;]([^\n]*[^ \t\r\n])?/

(* Variable: section_re
   SECTCRE's header: anything but "]"; not one of the tree's own labels. *)
let section_re = /[^]\n]+/ - /#(comment|rem|empty|continued)/

(* View: mk_lns
   The lens, with "nl" the line end of new lines. *)
let mk_lns (nl:string) =
  let eol = del /[ \t\r]*\n/ nl in
  let comment = [ label "#comment" . del /[#;][ \t]*/ "# " . store text . eol ]
              | [ label "#comment" . del /[#;][ \t\r]*\n/ ("#" . nl) ] in
  let rem = [ label "#rem" . store /[rR][eE][mM]([ \t]+[^ \t\r\n]([^\n]*[^ \t\r\n])?)?/ . eol ] in
  let empty = [ label "#empty" . del /[ \t\r]*\n/ nl ] in
  let blanks = del /[ \t]*/ " " in
  let entry (k:regexp) (sep:lens) =
      [ key k . sep . (blanks . store value_re)? . eol ]
    | [ key k . sep . blanks . store /;([^\n]*[^ \t\r\n])?/ . del "\n" "\n" ]
    | [ key k . sep . blanks . store /;[^\n]*[ \t\r]/ . del "\n" "\n" ] in
  let entries = entry key_re (del /[ \t]*[:=]/ ":") | entry rem_key (del /[:=]/ ":") in
  let continued = [ label "#continued" . del /[ \t]+/ "    " . store text . eol ] in
  let title = del "[" "[" . key section_re . del /\][^\n]*\n/ ("]" . nl) in
  let loose = comment | rem | empty in
  let section = [ title . loose* . (entries . (entries | loose | continued)*)? ] in
  loose* . section*

(* View: lns
   Pulp's files as they are; new lines end in LF. *)
let lns = mk_lns "\n"

let filter = incl "/etc/pulp/server.conf"

let xfm = transform lns filter
