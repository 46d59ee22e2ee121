(*
Module: Test_Pulp
  Unit tests for the Pulp lens: run with
  > augparse -I lenses lenses/tests/test_pulp.aug
*)
module Test_Pulp =

(* A small file in the 2.12+ style: prose, commented defaults, "=" entries,
   a commented-out section, trailing blanks, ";" comments. *)
let conf = "# =========================
# Pulp Server Configuration
# =========================

# = Database =
#
# seeds: comma-separated list of hostname:port
#     of database replica seed hosts
[database]
# name: pulp_database
# seeds: localhost:27017
name: pulp_database   \n\n\n# = Server =
[server]
server_name = pulp.example.com
password:
; an old-style comment
# [ldap]
# enabled: true # are you sure?
#   \n[authentication]
rsa_key=/etc/pki/pulp/rsa.key
"

test Pulp.lns get conf =
  { "#comment" = "=========================" }
  { "#comment" = "Pulp Server Configuration" }
  { "#comment" = "=========================" }
  { "#empty" }
  { "#comment" = "= Database =" }
  { "#comment" }
  { "#comment" = "seeds: comma-separated list of hostname:port" }
  { "#comment" = "of database replica seed hosts" }
  { "database"
    { "#comment" = "name: pulp_database" }
    { "#comment" = "seeds: localhost:27017" }
    { "name" = "pulp_database" }
    { "#empty" }
    { "#empty" }
    { "#comment" = "= Server =" } }
  { "server"
    { "server_name" = "pulp.example.com" }
    { "password" }
    { "#comment" = "an old-style comment" }
    { "#comment" = "[ldap]" }
    { "#comment" = "enabled: true # are you sure?" }
    { "#comment" } }
  { "authentication"
    { "rsa_key" = "/etc/pki/pulp/rsa.key" } }

(* Values keep "#", ";", quotes and "%%" literally *)
test Pulp.lns get "[s]\nurl: amqp://u:p#w;d@h//\nq = \"x\" 'y'\npct:50%%\n" =
  { "s"
    { "url" = "amqp://u:p#w;d@h//" }
    { "q" = "\"x\" 'y'" }
    { "pct" = "50%%" } }

(* Updating a value keeps the separator, the spacing and the trailing blanks *)
test Pulp.lns put "[s]\nname  =   old  \nseeds:x\n" after
  set "/s/name" "new";
  set "/s/seeds" "db:27017"
  = "[s]\nname  =   new  \nseeds:db:27017\n"

(* A valueless entry that gets a value keeps its separator *)
test Pulp.lns put "[authentication]\nrsa_key =\npassword:\n" after
  set "/authentication/rsa_key" "/k";
  set "/authentication/password" "pw"
  = "[authentication]\nrsa_key = /k\npassword: pw\n"

(* Emptying a value keeps the separator and the line's end *)
test Pulp.lns put "[s]\na = 1 \n" after
  clear "/s/a"
  = "[s]\na = \n"

(* A live line goes right after its commented default *)
test Pulp.lns put "[database]\n# name: pulp_database\n# seeds: localhost:27017\n\n# = Server =\n" after
  insa "seeds" "/database/#comment[2]";
  set "/database/seeds" "db:27017"
  = "[database]\n# name: pulp_database\n# seeds: localhost:27017\nseeds: db:27017\n\n# = Server =\n"

(* A new section goes to the end *)
test Pulp.lns put "[a]\nx: 1\n" after
  clear "/a/#empty[last()+1]";
  set "/tasks/broker_url" "qpid://h/"
  = "[a]\nx: 1\n\n[tasks]\nbroker_url: qpid://h/\n"

(* An empty file is fine (a new section is all it gets), and so is a file of comments only *)
test Pulp.lns put "" after set "/server/server_name" "pulp" = "[server]\nserver_name: pulp\n"
test Pulp.lns get "#\n;\n" = { "#comment" } { "#comment" }

(* Python 2.7's dialect: a header followed by a comment or text, spaces inside the
   brackets (the section " database ", which Pulp ignores), keys with blanks, ";" and
   "rem" comments *)
test Pulp.lns get "[database] ; the database\n[ s ]junk\nmy key = 1\nrem old style\nREM\n" =
  { "database" }
  { " s "
    { "my key" = "1" }
    { "#rem" = "rem old style" }
    { "#rem" = "REM" } }

(* "rem" as a key only with the separator right after it; "rem : x" is a rem line *)
test Pulp.lns get "[s]\nrem: 1\nRem=2\nrem : 3\n" =
  { "s" { "rem" = "1" } { "Rem" = "2" } { "#rem" = "rem : 3" } }

(* Continuation lines belong to the last entry, across blank lines and comments *)
test Pulp.lns get "[s]\na: 1\n  more\n\n# c\n\t# not a comment\nb:\n  x\n" =
  { "s"
    { "a" = "1" }
    { "#continued" = "more" }
    { "#empty" }
    { "#comment" = "c" }
    { "#continued" = "# not a comment" }
    { "b" }
    { "#continued" = "x" } }

(* A value starting with ";" keeps its trailing blanks: Pulp then reads it as empty *)
test Pulp.lns get "[s]\na: ;x\nb: ;y \n" =
  { "s" { "a" = ";x" } { "b" = ";y " } }

(* CRLF files round-trip; Pulp_crlf.lns ends the lines it adds with CRLF *)
test Pulp_crlf.lns put "[s]\r\na: 1\r\n" after
  set "/s/b" "2";
  set "/t/c" "3"
  = "[s]\r\na: 1\r\nb: 2\r\n[t]\r\nc: 3\r\n"
test Pulp.lns put "[s]\r\na: 1\r\n" after set "/s/a" "2" = "[s]\r\na: 2\r\n"

(* Rejected: text after a blank with no entry before it in its section (SafeConfigParser
   fails on it too), before any section, or right after a header *)
test Pulp.lns get "[s]\n  more\n" = *
test Pulp.lns get "[s]\n# c\n\n  # indented comment\n" = *
test Pulp.lns get "a: 1\n[s]\nb: 2\n  more\n[t]\n  more\n" = *
(* Rejected: an entry before any section, a line without separator *)
test Pulp.lns get "a: 1\n" = *
test Pulp.lns get "[s]\njust words\n" = *
(* Rejected: a missing final newline *)
test Pulp.lns get "[s]\na: 1" = *
(* Rejected: lines starting with "[" that are no header *)
test Pulp.lns get "[]\n" = *
test Pulp.lns get "[s\n" = *
