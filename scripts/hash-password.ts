// Prints an scrypt hash for a staff directory entry: node --import tsx scripts/hash-password.ts
// (reads the password from stdin so it does not land in shell history).
import { hashPassword } from '../src/auth/passwords.ts';

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', async () => {
  const password = input.replace(/\r?\n$/, '');
  if (password.length < 8) {
    console.error('password must be at least 8 characters');
    process.exit(2);
  }
  console.log(await hashPassword(password));
});
