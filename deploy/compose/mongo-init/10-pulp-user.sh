# Sourced by the mongo image's entrypoint on the first start only (empty /data/db), with
# "${mongo[@]}" already logged in as the root user: creates Pulp's user in Pulp's database (Pulp
# authenticates against its own database), with the password from the file pulpinit reads too.
pulp_password="$(cat "${PULP_DB_PASSWORD_FILE:-/run/secrets/pulp/db-password}")"
"${mongo[@]}" "$MONGO_INITDB_DATABASE" <<EOJS
db.createUser({
  user: "pulp",
  pwd: "${pulp_password}",
  roles: [{role: "dbOwner", db: "${MONGO_INITDB_DATABASE}"}]
});
EOJS
unset pulp_password
